"""Writes that never leave a partial file (or folder) under its final name.

    with atomic_write(path, "wb") as f:    # a temp file beside `path`, fsynced, then os.replace
        f.write(...)
    atomic_write_text(path, text)
    with atomic_dir(path) as tmp:          # a temp folder beside `path`, renamed into place
        ...
    pending = PendingFile(path)            # for writers that want a path (rosbags, ffmpeg):
    ... write pending.tmp ...; pending.commit()   # or pending.abort(); keeps the extension
    clean_stale(folder)                    # remove temp files / folders a killed run left
    with staged_dir(path) as tmp:          # the same for a folder that may hold other files already
        ...
    with DirLock(folder, wait=False):      # one writer per folder (a training run's --out)
        ...

Temp names start with "." and end with ".tmp" (files) or ".tmp.d" (folders) and carry the
writer's pid, so `clean_stale` can tell a dead writer's leftovers from a live one's.
On any exception (KeyboardInterrupt included) the temp is removed and the final name is
untouched: a reader sees the old file or the new one, never half of one; a write that failed
for want of space says so ("no space left on the device holding ...") whatever the writing
library said.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

_STALE = re.compile(r"^\..+\.(\d+)\.\w+\.tmp(\.d|\.\w+)?$")


def _prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside `path` for writing; on success fsync it and rename it to `path`."""
    if "w" not in mode:
        raise ValueError(f"atomic_write: mode must write, got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        full = disk_full(exc, path.parent)  # before the temp file is removed and frees its space
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if full:
            raise OSError(errno.ENOSPC, f"no space left on the device holding {path.parent} (writing {path.name}): "
                                        "free some space or write elsewhere") from None
        raise


def disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write failed for want of space: ENOSPC / EDQUOT, or a library's own error
    (torch.save: "[enforce fail at inline_container.cc] ... unexpected pos") on a full device."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(exc, (OSError, RuntimeError)):
        return False
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail now, in one line, when `path` could not be written later (a long job's result file):
    creates its folder and probes it with a temp file."""
    path = Path(path)
    if path.is_dir():
        raise OSError(errno.EISDIR, f"cannot write the {what} {path}: it is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write the {what} {path}: {exc.strerror or exc}") from None
    return path


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temp name beside `path` (same extension, so tools that look at it still work);
    the caller writes it and renames it to `path`, or removes it on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers such as rosbags refuse an existing file
    return Path(tmp)


class PendingFile:
    """A temp name beside `path` for writers that open files by name; `commit()` moves it into
    place, `abort()` removes it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.tmp = temp_path(self.path)

    def commit(self) -> Path:
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A temp folder beside `path`; renamed to `path` on success (an existing `path`, e.g. written
    by a concurrent run, is kept and the temp removed), removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp.d", dir=path.parent))
    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError:  # another process won the race: keep theirs
            if not path.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Like atomic_dir, for a folder that may already hold other files (another split of a data
    set): everything is written into a temp folder beside `path` and moved in file by file once
    the block succeeds (a file already there is replaced); on failure `path` is untouched."""
    path = Path(path)
    if not path.exists():
        with atomic_dir(path) as tmp:
            yield tmp
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp.d", dir=path.parent))
    try:
        yield tmp
        for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
            dest = path / f.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the temp files and folders of writers that are no longer running; returns them."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _STALE.match(p.name)
        if m is None or _alive(int(m.group(1))):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    return removed


class LockedError(RuntimeError):
    """A folder is locked by another live process (DirLock)."""


class DirLock:
    """An exclusive lock on a folder for one process: fcntl.flock on FOLDER/.lock, which the kernel
    releases when the holder exits or is killed, so a lock is never left stale; the holder's PID is
    written in the file for the message. `wait` blocks until the folder is free instead of
    refusing. A lock file left by a killed process is taken over (and said so).

        with DirLock(run_dir, wait=False, log=print):
            ...   # LockedError("... in use by PID 1234 ...") when another process holds it
    """

    def __init__(self, folder: str | os.PathLike, wait: bool = False, log=lambda s: None,
                 what: str = "run directory", hint: str = "give another --out, or --wait for it") -> None:
        self.folder, self.wait, self.log, self.what, self.hint = Path(folder), wait, log, what, hint
        self.fd: int | None = None

    def __enter__(self) -> "DirLock":
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        previous = os.read(fd, 32).decode("ascii", "replace").strip()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self.wait:
                os.close(fd)
                raise LockedError(f"{self.folder}: the {self.what} is in use by PID {previous or '?'} "
                                  f"(another run writing there); {self.hint}") from None
            self.log(f"{self.folder}: waiting for PID {previous or '?'} to finish with the {self.what}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            if previous.isdigit() and int(previous) != os.getpid() and not _alive(int(previous)):
                self.log(f"{self.folder}: took over the lock of PID {previous} (no longer running)")
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
