# The two set-up commands of the README: `make run` and `make test`. Both create what is
# missing and are idempotent (stamp files record what is installed).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: run test plan bench-plan clean

run: $(VENV)/.ok-app
	$(BIN)/python -m sd_trainplan plan --preset dreambooth_advanced

test: $(VENV)/.ok-test
	$(BIN)/python -m pytest

bench-plan: $(VENV)/.ok-app
	$(BIN)/python bench/plan_speed.py

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.ok-app: $(BIN)/python pyproject.toml
	$(PIP) install -e .
	touch $@

$(VENV)/.ok-test: $(VENV)/.ok-app requirements/test.txt
	$(PIP) install -r requirements/test.txt
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
