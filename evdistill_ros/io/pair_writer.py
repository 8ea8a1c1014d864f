"""Training pairs extracted once from recordings into a pair cache (format: io.pair_cache).

    extract_pairs(source, cache_root, progress=True, log=print) -> Path

For every APS frame of every recording, the one recording -> sample path (`io.samples.iter_bag_samples`
with the source's `EventInput`) gives the embedding of the window ending at the frame, the
frame and its label; the frame is stored as `frames.to_frame` makes it for `data.frame` (grey
or RGB) and everything is resized with `frames.resize`, the functions inference uses
(models.preprocess with the checkpoint's `frame` and `resize: area`). Epochs then never re-read bags.

Extraction streams (one sample in memory at a time) into memory-mapped arrays in a temp
folder that is renamed into place when complete (`atomic.atomic_dir`): a crash never leaves a
half-written cache under the key, and the temp folders of killed runs are removed by the next
one (`atomic.clean_stale`).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from .. import frames
from ..atomic import atomic_dir, atomic_write_text, clean_stale
from ..classes import IGNORE_INDEX, class_set
from .bag import topics
from .pair_cache import ARRAYS, PairSource, open_cache, verify_cache, with_checksum
from .samples import iter_bag_samples


def extract_pairs(source: PairSource, cache_root: str | os.PathLike, progress: bool = True,
                  log: Callable[[str], None] = print) -> Path:
    """Extract (or find) the cache of `source` under `cache_root`."""
    if not source.bags:
        raise ValueError("no training bags given (set data.bags in the config or pass --bags)")
    classes = class_set(source.class_set)
    root = Path(cache_root).expanduser()
    final = root / source.key()
    if _usable(final, classes, log):
        return final
    root.mkdir(parents=True, exist_ok=True)
    for p in clean_stale(root):
        log(f"removed {p.name}, left by an extraction that did not finish")
    total = sum(_frame_counts(source))
    with atomic_dir(final) as tmp:
        with tqdm(total=total, desc="extract pairs", unit="frame", disable=not progress) as bar:
            written = _write_pairs(tmp, source, classes, total, bar)
        n, size, channels, ranges, empty = written
        if n < total:  # frames skipped (too few events, fewer frames than counted): rewrite trimmed
            _trim(tmp, n)
        labelled = int(np.load(tmp / "has_label.npy").sum())
        meta = dict(source.key_inputs(), n=n, height=int(size[0]), width=int(size[1]),
                    channels=channels, labelled=labelled, bag_ranges=ranges, created=time.time())
        atomic_write_text(tmp / "meta.json", json.dumps(with_checksum(meta), indent=1))
    log(f"cached {n} pairs ({labelled} labelled) from {len(source.bags)} bag(s) -> {final}"
        + (f"; {empty} empty frame(s) skipped" if empty else ""))
    return final


def _usable(final: Path, classes, log: Callable[[str], None]) -> bool:
    """True when the cache exists and verifies; a damaged one is said and removed."""
    if not final.exists():
        return False
    try:
        verify_cache(open_cache(final), classes)
        return True
    except ValueError as exc:  # damaged since it was written: said, then extracted again
        log(f"pair cache {final} is damaged ({exc}): extracting it again")
        shutil.rmtree(final, ignore_errors=True)
        return False


def _frame_counts(source: PairSource) -> list[int]:
    """APS frames per bag (from the index: the arrays are sized before reading)."""
    counts = []
    for bag in source.bags:
        have = topics(bag)
        if source.image_topic not in have or not have[source.image_topic].count:
            raise ValueError(f"{bag}: no APS frames on {source.image_topic}")
        counts.append(have[source.image_topic].count)
    return counts


def _write_pairs(tmp: Path, source: PairSource, classes, total: int, bar
                 ) -> tuple[int, tuple[int, int], int, list[list[int]], int]:
    """Every usable frame of every bag into arrays of `total` rows; (rows written, size, event
    channels, per-bag row ranges, empty frames)."""
    size = tuple(source.resize) if source.resize else None
    min_events = int(source.min_events or 0)
    arrays = None
    n = empty = 0
    ranges = []
    for bi, bag in enumerate(source.bags):
        start = n
        for s in iter_bag_samples(bag, event_input=source.event_input, events_topic=source.events_topic,
                                  image_topic=source.image_topic, labels_topic=source.labels_topic, classes=classes):
            bar.update(1)
            if s.aps is None:  # an empty (0 x 0) frame: nothing to pair
                empty += 1
                continue
            if s.num_events < min_events:
                continue
            frame = frames.to_frame(s.aps, source.frame)
            if size is None:
                size = frame.shape[:2]
            elif not source.resize and frame.shape[:2] != size:
                raise ValueError(f"{bag}: frames of {frame.shape[1]}x{frame.shape[0]}, earlier bags "
                                 f"{size[1]}x{size[0]}; set data.resize to train on both")
            if arrays is None:
                arrays = _allocate(tmp, total, s.events.shape[0], size, frames.frame_channels(source.frame))
            arrays["events"][n] = frames.resize(s.events, size)
            arrays["aps"][n] = frames.resize(frame, size)
            arrays["has_label"][n] = s.label is not None
            arrays["labels"][n] = IGNORE_INDEX if s.label is None else frames.resize(s.label, size, nearest=True)
            arrays["t_ns"][n], arrays["n_events"][n], arrays["bag_index"][n] = s.t_ns, s.num_events, bi
            n += 1
        ranges.append([start, n])
    if arrays is None or n == 0:
        raise ValueError(f"no training pairs extracted from {len(source.bags)} bag(s) (min_events too high?)")
    channels = int(arrays["events"].shape[1])
    for a in arrays.values():
        a.flush()
    return n, size, channels, ranges, empty


def _trim(tmp: Path, n: int) -> None:
    """Rewrite every array with its first `n` rows."""
    for name in ARRAYS:
        full = np.load(tmp / f"{name}.npy", mmap_mode="r")
        trimmed = np.array(full[:n])  # a copy: a view would keep the mapping the save truncates
        del full
        np.save(tmp / f"{name}.npy", trimmed)


def _allocate(tmp: Path, n: int, channels: int, size: tuple[int, int], frame_channels: int
              ) -> dict[str, np.ndarray]:
    H, W = size
    spec = {
        "events": ((n, channels, H, W), np.float32),
        "aps": ((n, H, W) if frame_channels == 1 else (n, H, W, frame_channels), np.uint8),
        "labels": ((n, H, W), np.uint8), "has_label": ((n,), np.bool_), "t_ns": ((n,), np.int64),
        "n_events": ((n,), np.int64), "bag_index": ((n,), np.int32),
    }
    return {name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dt, shape=shape)
            for name, (shape, dt) in spec.items()}
