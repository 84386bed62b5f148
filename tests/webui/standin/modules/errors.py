"""Mirrors modules/errors.py (v1.10.1): report/display print the message and the traceback."""
import traceback

recorded = []


def report(message, *, exc_info=False):
    recorded.append(message)
    print(message)
    if exc_info:
        traceback.print_exc()


def display(e, task, *, full_traceback=False):
    report(f"{task or 'error'}: {type(e).__name__}", exc_info=True)


def record_exception():
    recorded.append(traceback.format_exc())
