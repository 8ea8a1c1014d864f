"""A network kept in step with its file, for long-running processes (the segmentation node).

    net = ReloadingPredictor("student", "student.pth", device="auto", check_s=5.0, log=Log())
    predictor = net.get()       # None while the file is missing or unusable (net.error says why)
    net.set_device("cuda")      # reloads before the next input

A missing or broken file is logged and retried every `check_s` seconds, a replaced one is
reloaded; nothing here raises to the caller. ROS-free: the node passes rospy's loggers.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .predictor import Predictor


class FileWatch:
    """Tells when a file appeared, disappeared or was replaced (mtime, size, inode) since the last look."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def changed(self) -> bool:
        now = self._stamp()
        if now == self._seen:
            return False
        self._seen = now
        return True


def _quiet(message: str) -> None:
    pass


@dataclass
class Log:
    """Where a ReloadingPredictor reports (print-like callables)."""

    info: Callable[[str], None] = _quiet
    error: Callable[[str], None] = _quiet


class ReloadingPredictor:
    """A Predictor loaded lazily and reloaded when its file changes; never fatal."""

    def __init__(self, role: str, path: str, device: str = "auto", fp16: bool = False, check_s: float = 5.0,
                 backend: str = "auto", log: Log | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.role, self.path, self.device, self.fp16, self.check_s = role, path, device, fp16, check_s
        self.backend = backend
        self.log = log or Log()
        self.clock = clock
        self.predictor: Predictor | None = None
        self.error = ""
        self.loads = 0
        self.watch = FileWatch(path)
        self._next_try: float | None = None
        self._lock = threading.Lock()

    def get(self) -> Predictor | None:
        """The current network (loading it first when due), or None with `error` set."""
        with self._lock:
            now = self.clock()
            if self._next_try is None or now >= self._next_try:
                first = self._next_try is None
                self._next_try = now + self.check_s
                # a missing file that appears, a truncated one that is rewritten: both change it
                if first or self.watch.changed():
                    self._load()
            return self.predictor

    def set_device(self, device: str) -> None:
        """Run on another device: the network reloads before its next input."""
        with self._lock:
            if device != self.device:
                self.log.info(f"{self.role}: device {self.device} -> {device} (reloading)")
                self.device, self._next_try = device, None

    def _load(self) -> None:
        if not os.path.isfile(self.path):
            self.predictor = None
            self.error = f"{self.role} checkpoint {self.path!r} not found (retrying every {self.check_s:g} s)"
            self.log.error(self.error)
            return
        try:
            self.predictor = Predictor(self.path, self.device, self.fp16, backend=self.backend,
                                       log=lambda m: self.log.info(f"{self.role}: {m}"))
        except Exception as exc:  # noqa: BLE001 - a bad file must not kill the process that runs it
            self.predictor = None
            self.error = f"cannot use {self.role} checkpoint {self.path}: {exc} (retrying when the file changes)"
            self.log.error(self.error)
            return
        self.error = ""
        self.loads += 1
        p = self.predictor
        self.log.info(f"{self.role}: {self.path} on {p.backend.device} with {p.backend.name} "
                      f"({p.card.backbone or p.card.arch}, input {p.representation})")
