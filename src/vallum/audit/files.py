"""Where the audit log lives on disk: numbered segment files, the writer lock, tails.

A log directory holds ``audit-000001.jsonl``, ``audit-000002.jsonl``, … (the chain runs through
them in number order), ``audit.pub`` (the checkpoint public key), ``writer.lock`` (held with
``flock`` by the running writer) and, by default, ``audit.key`` (the private signing key).
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

SEGMENT_RE = re.compile(r"^audit-(\d{6,})\.jsonl$")
LOCK_NAME = "writer.lock"


def segment_name(number: int) -> str:
    return f"audit-{number:06d}.jsonl"


def segment_number(path: Path) -> int | None:
    m = SEGMENT_RE.match(path.name)
    return int(m.group(1)) if m else None


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files of a log directory, in chain order."""
    out = []
    for p in directory.iterdir():
        n = segment_number(p)
        if n is not None and p.is_file():
            out.append((n, p))
    return sorted(out)


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (without their LF) and the torn remainder after the last LF."""
    cut = data.rfind(b"\n") + 1
    body, torn = data[:cut], data[cut:]
    lines = body.split(b"\n")
    lines.pop()  # the empty string after the final LF
    return lines, torn


def first_line(path: Path, limit: int = 1 << 20) -> bytes | None:
    """The first complete line of a file (None if it has none)."""
    with open(path, "rb") as f:
        data = f.read(limit)
    i = data.find(b"\n")
    return data[:i] if i >= 0 else None


def last_line(path: Path) -> bytes | None:
    """The last complete line of a file, read backwards in growing chunks."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        chunk = 4096
        while True:
            start = max(0, size - chunk)
            f.seek(start)
            data = f.read(size - start)
            cut = data.rfind(b"\n")
            if cut < 0:
                if start == 0:
                    return None
                chunk *= 4  # a torn tail longer than the chunk: look further back
                continue
            prev = data.rfind(b"\n", 0, cut)
            if prev >= 0 or start == 0:
                return data[prev + 1 : cut]
            chunk *= 4


class WriterLock:
    """An exclusive ``flock`` on ``writer.lock``: one writer per log directory."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def writer_is_live(directory: Path) -> bool:
    """True if a writer process holds the directory's lock right now."""
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
