"""The `Events` structure-of-arrays used everywhere in the library."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

X_DTYPE = np.uint16
Y_DTYPE = np.uint16
T_DTYPE = np.int64  # nanoseconds
P_DTYPE = np.int8  # 1 = positive; 0 or -1 = negative


@dataclass(frozen=True)
class Events:
    """A batch of events as parallel numpy arrays.

    x, y: uint16 pixel coordinates; t: int64 nanoseconds; p: int8, ``p > 0`` is an ON
    (brightness increase) event and 0 or -1 an OFF event. Arrays are converted to these
    dtypes on construction (no copy when they already match) and must have equal length.
    """

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", np.ascontiguousarray(self.x, dtype=X_DTYPE))
        object.__setattr__(self, "y", np.ascontiguousarray(self.y, dtype=Y_DTYPE))
        object.__setattr__(self, "t", np.ascontiguousarray(self.t, dtype=T_DTYPE))
        object.__setattr__(self, "p", np.ascontiguousarray(self.p, dtype=P_DTYPE))
        n = len(self.x)
        if not (len(self.y) == len(self.t) == len(self.p) == n):
            raise ValueError(
                f"Events arrays differ in length: x={n} y={len(self.y)} t={len(self.t)} p={len(self.p)}"
            )

    @classmethod
    def empty(cls) -> "Events":
        return cls(np.empty(0, X_DTYPE), np.empty(0, Y_DTYPE), np.empty(0, T_DTYPE), np.empty(0, P_DTYPE))

    @classmethod
    def concatenate(cls, chunks: Iterable["Events"]) -> "Events":
        chunks = [c for c in chunks if len(c)]
        if not chunks:
            return cls.empty()
        if len(chunks) == 1:
            return chunks[0]
        return cls(
            np.concatenate([c.x for c in chunks]),
            np.concatenate([c.y for c in chunks]),
            np.concatenate([c.t for c in chunks]),
            np.concatenate([c.p for c in chunks]),
        )

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, index: slice | np.ndarray | Sequence[int]) -> "Events":
        if isinstance(index, (int, np.integer)):
            raise TypeError("index Events with a slice or an index array, not a single integer")
        return Events(self.x[index], self.y[index], self.t[index], self.p[index])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Events):
            return NotImplemented
        return (
            np.array_equal(self.x, other.x)
            and np.array_equal(self.y, other.y)
            and np.array_equal(self.t, other.t)
            and np.array_equal(self.p > 0, other.p > 0)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside

    @property
    def positive(self) -> np.ndarray:
        """Boolean mask of ON events, whatever the polarity convention (1/0 or +1/-1)."""
        return self.p > 0

    def time_slice(self, t_start: int, t_end: int) -> "Events":
        """Events with ``t_start <= t < t_end``; ``t`` must be sorted."""
        i0, i1 = np.searchsorted(self.t, [t_start, t_end], side="left")
        return self[i0:i1]

    def in_bounds(self, height: int, width: int) -> np.ndarray:
        """Boolean mask of events inside a ``height`` x ``width`` sensor."""
        return (self.x < width) & (self.y < height)

    def inside(self, height: int, width: int) -> tuple["Events", int]:
        """(the events inside a height x width sensor, how many were outside); a size of 0 means
        unknown, and then nothing is dropped."""
        if not (height and width and len(self)):
            return self, 0
        mask = self.in_bounds(height, width)
        dropped = int(len(self) - np.count_nonzero(mask))
        return (self[mask] if dropped else self), dropped

    def is_time_sorted(self) -> bool:
        return bool(len(self.t) < 2 or np.all(self.t[1:] >= self.t[:-1]))

    def __repr__(self) -> str:
        if not len(self):
            return "Events(n=0)"
        return f"Events(n={len(self)}, t=[{self.t[0]}, {self.t[-1]}] ns, on={int(self.positive.sum())})"
