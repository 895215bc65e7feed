"""Small, careful file-system helpers shared by the journal and the embedded PostgreSQL."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def make_private_dirs(path: Path) -> list[Path]:
    """Create ``path`` with mode 0700 and its missing parents with 0711 (others may pass through to reach
    what they own, as the embedded server's ``postgres`` user must, but not list); returns the directories
    created, outermost first. (``Path.mkdir(parents=True, mode=…)`` applies the mode to the last one only,
    and the umask to the others.)"""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    created: list[Path] = []
    for p in reversed(missing):
        want = 0o700 if p == path else 0o711
        try:
            p.mkdir(mode=want)  # the umask can only clear bits: `path` is never more open than 0700
        except FileExistsError:
            continue  # created concurrently by another tradebot process
        # Parents need o+x even under a strict umask. `path` is never chmod-ed after mkdir: that chmod could
        # land after another process, holding the embedded server's start lock, has given the state
        # directory g+x for the server's user, and take it away while initdb runs.
        if p != path and stat.S_IMODE(p.stat().st_mode) != want:
            os.chmod(p, want)
        created.append(p)
    return created


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` or raise OSError: ``os.write`` may write fewer bytes than asked (a full
    disk, a file size limit), and a short write that is not noticed leaves a torn record behind."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # no progress and no error: treat as a full disk rather than spin
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def fsync_dir(path: Path) -> None:
    """Make a directory entry (a created, renamed or removed file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
