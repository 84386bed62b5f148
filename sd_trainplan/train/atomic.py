"""Files are written whole or not at all: a temporary name in the same folder, fsync, rename.

A crash, a Stop or a SIGKILL mid-write leaves at most a `.tmp` file, never a half-written file
under the final name; and nothing is overwritten without a new name (`unique_path`). The file
gets the mode any new file gets (0666 less the umask: 0644 under the usual 022), as the WebUI's
own files do, not the 0600 of the private temporary file it was written as.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Union

PathLike = Union[str, Path]


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Call write(tmp_path) then move it to `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def current_umask() -> int:
    """The process's umask. Read from /proc where Linux shows it: setting it to read it back
    (os.umask's only way) would leave a moment in which another thread creates files under 0."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: PathLike, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return atomic_write(path, write)


def unique_path(path: PathLike) -> Path:
    """`path`, or `name-1.ext`, `name-2.ext`, ... : the first that does not exist yet."""
    path = Path(path)
    if not path.exists():
        return path
    i = 1
    while True:
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
        if not candidate.exists():
            return candidate
        i += 1


def append_line(path: PathLike, line: str) -> None:
    """Append one line and flush it to disk (metrics.jsonl survives a crash up to the last line)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())
