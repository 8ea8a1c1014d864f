"""Small thread-safe pieces the nodes share (no rospy here, so they are unit-tested directly)."""
from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class LatestOnly(Generic[T]):
    """A one-slot mailbox: `put` replaces an unconsumed item (counted as stale), `get` waits.

    Inference slower than the window stride then never builds a backlog: it always works
    on the newest window and the skipped ones are counted, not queued.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.stale = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._item is not None:
                self.stale += 1
            self._item = item
            self._cond.notify()

    def get(self, timeout: float | None = None) -> T | None:
        """The newest item, or None on timeout / close."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class RollingStats:
    """Percentiles of the last `size` samples (latencies in ms, say)."""

    def __init__(self, size: int = 1000) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.count = 0

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append(float(value))
            self.count += 1

    def summary(self) -> dict[str, float]:
        with self._lock:
            v = np.array(self._values, dtype=np.float64)
        if not v.size:
            return {"n": 0}
        p50, p95, p99 = np.percentile(v, [50, 95, 99])
        return {"n": int(v.size), "mean": float(v.mean()), "p50": float(p50), "p95": float(p95), "p99": float(p99),
                "max": float(v.max())}


class Counters:
    """Named integer counters incremented from several threads (callbacks, inference loops)."""

    def __init__(self, *names: str) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(names, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)
