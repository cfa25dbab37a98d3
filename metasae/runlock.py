"""One run per results folder: an OS lock (flock) that the workflow's driver holds until it exits.

The kernel drops the lock when the process dies, SIGKILL included, so a killed run never leaves a stale lock
and the same command resumes it; a second run on the same folder is refused at once, naming the holder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from metasae.errors import MetasaeError

LOCK_FILE = ".metasae.lock"
_held: dict[Path, int] = {}  # folder -> open descriptor: the lock lives as long as this process


def lock_results(results: str | Path) -> None:
    """Take the results folder's lock for the rest of this process, or raise naming the process holding it.
    Taking it again in the same process is a no-op (flock locks are per open file: a second descriptor
    would refuse its own process)."""
    results = Path(results)
    if results.resolve() in _held:
        return
    results.mkdir(parents=True, exist_ok=True)
    fd = os.open(results / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise MetasaeError(
            f"{results}: another run (PID {holder}) is using this results folder; wait for it or stop it"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[results.resolve()] = fd
