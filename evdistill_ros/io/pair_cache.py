"""The training-pair cache as a dataset format: layout, key and reader.

A cache holds, for every APS frame of a set of bags, the event embedding of the window that
ends at the frame's stamp, the frame (grey or RGB uint8, as `data.frame` says) and its label. It is written by
`evdistill_ros.io.pair_writer.extract_pairs` and read here, by training (distill.dataset) and
by evaluation (`iter_samples(path, format="cache")`) alike; written by io.pair_writer.

Layout of one cache (a directory named by the key):

    meta.json     key inputs (bags, topics, event_input, resize, frame, version), n, channels,
                  height, width, labelled, per-bag frame ranges, created
    events.npy    (n, C, H, W) float32  embedding (`EventInput` windows, un-normalised)
    aps.npy       (n, H, W) uint8       APS frame as `frames.to_frame(.., "gray")` makes it, or
                  (n, H, W, 3) uint8    with frame "rgb", RGB as `frames.to_frame(.., "rgb")` makes it
    labels.npy    (n, H, W) uint8       class ids, IGNORE_INDEX (255) where no label
    has_label.npy (n,) bool             frame had a label message
    t_ns.npy      (n,) int64            frame stamp (= window end)
    n_events.npy  (n,) int64            events in the window
    bag_index.npy (n,) int32            index into meta["bags"]

    PairSource(bags, event_input, topics, resize, ...)  the key: .key_inputs() -> dict, .key() -> str
    open_cache(path) -> PairCache            memory-mapped arrays + meta (sizes checked)
    verify_cache(cache, classes) -> cache    ValueError when damaged: meta.json's checksum, label ids,
                                             non-finite embeddings in up to 256 spread frames
    with_checksum(meta) -> meta              meta.json's content with its checksum
    is_cache(path) -> bool
    iter_cache_samples(path, event_input=None, labelled_only=True) -> Iterator[Sample]
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ..errors import DataLayoutError
from ..events.spec import EventInput
from .sample import Sample

FORMAT_VERSION = 2  # 2: event_input in the key, frames through evdistill_ros.frames
ARRAYS = ("events", "aps", "labels", "has_label", "t_ns", "n_events", "bag_index")


def _bag_identity(path: str) -> dict:
    """Path, size and mtime of a bag: a ROS1 file, or every file of a rosbag2 folder."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise DataLayoutError(f"training bag not found: {path}")
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    stats = [f.stat() for f in files]
    return {"path": str(p), "size": sum(st.st_size for st in stats), "mtime_ns": max(st.st_mtime_ns for st in stats)
            if stats else 0}


@dataclass(frozen=True)
class PairSource:
    """What a cache's content depends on, typed: its key. Any change re-extracts."""

    bags: tuple[str, ...]
    event_input: EventInput
    events_topic: str
    image_topic: str
    labels_topic: str | None = None
    resize: tuple[int, int] | None = None
    min_events: int = 0
    class_set: str = "ddd17"
    frame: str = "gray"

    def key_inputs(self) -> dict:
        """The key's inputs as meta.json stores them (bags by path, size and mtime)."""
        return {
            "version": FORMAT_VERSION,
            "bags": [_bag_identity(b) for b in self.bags],
            "events_topic": self.events_topic,
            "image_topic": self.image_topic,
            "labels_topic": self.labels_topic,
            "event_input": self.event_input.to_dict(),
            "resize": list(self.resize) if self.resize else None,
            "min_events": int(self.min_events or 0),
            # only when not DDD17's, so the caches made before class sets keep their keys
            **({"class_set": str(self.class_set)} if self.class_set != "ddd17" else {}),
            **({"frame": str(self.frame)} if self.frame != "gray" else {}),
        }

    def key(self) -> str:
        blob = json.dumps(self.key_inputs(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]


@dataclass
class PairCache:
    path: Path
    meta: dict
    events: np.ndarray
    aps: np.ndarray
    labels: np.ndarray
    has_label: np.ndarray
    t_ns: np.ndarray
    n_events: np.ndarray
    bag_index: np.ndarray

    def __len__(self) -> int:
        return int(self.meta["n"])

    @property
    def frame(self) -> str:
        """"gray" or "rgb": how the frames were stored (absent in caches of grey frames)."""
        return str(self.meta.get("frame", "gray"))

    @property
    def event_input(self) -> EventInput:
        return EventInput.from_dict(self.meta["event_input"])


def _meta_digest(meta: Mapping[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def with_checksum(meta: Mapping[str, Any]) -> dict:
    """`meta` with the checksum verify_cache compares (an edited or garbled meta.json shows)."""
    return {**meta, "checksum": _meta_digest(meta)}


def verify_cache(cache: "PairCache", classes: Any = None, frames: int = 256) -> "PairCache":
    """`cache` when it is as written; ValueError saying what is damaged otherwise: meta.json
    that does not match its checksum (caches from before the checksum pass), label ids outside
    `classes` (a ClassSet) and 255, non-finite embeddings in up to `frames` evenly spread frames
    (a full scan of tens of GB at every start would cost more than the damage it finds)."""
    want = cache.meta.get("checksum")
    if want is not None and want != _meta_digest(cache.meta):
        raise DataLayoutError("meta.json does not match its checksum")
    if classes is not None:
        counts = np.zeros(256, np.int64)
        for s in range(0, len(cache), 256):
            counts += np.bincount(np.asarray(cache.labels[s:s + 256]).ravel(), minlength=256)
        bad = [int(v) for v in np.flatnonzero(counts[classes.num_classes:255])]
        if bad:
            raise DataLayoutError(f"labels hold ids {[v + classes.num_classes for v in bad[:5]]} outside "
                             f"{classes.describe()}")
    n = len(cache)
    pick = np.unique(np.linspace(0, n - 1, min(frames, n)).astype(np.int64)) if n else []
    for i in pick:
        if not np.isfinite(cache.events[i]).all():
            raise DataLayoutError(f"the embedding of frame {int(i)} holds NaN or infinite values")
    return cache


def is_cache(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "meta.json").is_file() and (p / "labels.npy").is_file()


def open_cache(path: str | os.PathLike) -> PairCache:
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise DataLayoutError(f"{path}: not a training-pair cache (no meta.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataLayoutError(f"{meta_path}: unreadable cache metadata ({exc})") from None
    if meta.get("version") != FORMAT_VERSION:
        raise DataLayoutError(f"{path}: cache format {meta.get('version')}, this code reads {FORMAT_VERSION} "
                         "(delete it; training extracts it again)")
    arrays = {}
    for name in ARRAYS:
        try:  # np.load without allow_pickle: object arrays are refused
            arrays[name] = np.load(path / f"{name}.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataLayoutError(f"{path / (name + '.npy')}: unreadable cache array ({exc})") from None
        if len(arrays[name]) != int(meta["n"]):
            raise DataLayoutError(f"{path / (name + '.npy')}: {len(arrays[name])} rows, meta.json says {meta['n']}")
    return PairCache(path=path, meta=meta, **arrays)


def cache_samples(cache: PairCache, indices: np.ndarray | None = None, labelled_only: bool = True) -> Iterator[Sample]:
    """Cached pairs as Samples (by default the labelled ones only)."""
    for j in (np.arange(len(cache)) if indices is None else indices):
        j = int(j)
        if labelled_only and not cache.has_label[j]:
            continue
        yield Sample(name=f"{j:06d}", t_ns=int(cache.t_ns[j]), events=np.asarray(cache.events[j]),
                     aps=np.asarray(cache.aps[j]), label=np.asarray(cache.labels[j]) if cache.has_label[j] else None,
                     num_events=int(cache.n_events[j]))


def iter_cache_samples(path: str | os.PathLike, event_input: EventInput | None = None,
                       labelled_only: bool = True) -> Iterator[Sample]:
    """Samples of a cache; with `event_input`, ValueError unless the cache holds its embedding."""
    cache = open_cache(path)
    if event_input is not None and not cache.event_input.same_embedding(event_input):
        raise DataLayoutError(f"the network reads {event_input.describe()} but the cache {path} holds "
                         f"{cache.event_input.describe()}")
    return cache_samples(cache, labelled_only=labelled_only)
