"""On-disk cache of training pairs extracted once from bags, read by memory map.

For every APS frame of every bag: the event embedding of the window that ends at the
frame's timestamp, the frame (grey uint8) and its label image when the bag has one on the
labels topic with the same stamp. Epochs then never re-read bags.

Layout of one cache (a directory named by the key):

    meta.json     key inputs, n, channels, height, width, per-bag frame ranges, created
    events.npy    (n, C, H, W) float32  embedding (`events.embed` output, un-normalised)
    aps.npy       (n, H, W) uint8       APS frame (mono16 scaled by 1/257, colour -> grey)
    labels.npy    (n, H, W) uint8       class ids, IGNORE_INDEX (255) where no label
    has_label.npy (n,) bool             frame had a label message
    t_ns.npy      (n,) int64            frame stamp (= window end)
    n_events.npy  (n,) int64            events in the window
    bag_index.npy (n,) int32            index into meta["bags"]

The key hashes the bags (absolute path, size, mtime), topics, representation and its
parameters, window, resize and the format version, so any change re-extracts. The cache is
written into a temporary sibling directory and renamed into place: a crash never leaves a
half-written cache under the key.

    cache_key(bags, data_cfg) -> str
    extract_pairs(bags, data_cfg, cache_root=None, progress=True, log=print) -> Path
    open_cache(path) -> PairCache  (memory-mapped arrays + meta)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..classes import IGNORE_INDEX

FORMAT_VERSION = 1
_ARRAYS = ("events", "aps", "labels", "has_label", "t_ns", "n_events", "bag_index")


def _bag_identity(path: str) -> dict:
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ValueError(f"training bag not found: {path}")
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _key_inputs(bags: Sequence[str], data_cfg: dict) -> dict:
    return {
        "version": FORMAT_VERSION,
        "bags": [_bag_identity(b) for b in bags],
        "events_topic": data_cfg["events_topic"],
        "image_topic": data_cfg["image_topic"],
        "labels_topic": data_cfg["labels_topic"],
        "representation": data_cfg["representation"],
        "representation_params": dict(sorted((data_cfg.get("representation_params") or {}).items())),
        "window_ns": data_cfg.get("window_ns"),
        "window_events": data_cfg.get("window_events"),
        "resize": list(data_cfg["resize"]) if data_cfg.get("resize") else None,
    }


def cache_key(bags: Sequence[str], data_cfg: dict) -> str:
    blob = json.dumps(_key_inputs(bags, data_cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def to_gray_u8(image: np.ndarray, encoding: str) -> np.ndarray:
    """sensor_msgs/Image pixels -> (H, W) uint8 grey."""
    if image.ndim == 3:
        rgb = image[..., :3].astype(np.float32)
        if encoding.startswith("bgr"):
            rgb = rgb[..., ::-1]
        g = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.rint(g), 0, 255).astype(np.uint8)
    if image.dtype == np.uint16:
        return (image.astype(np.uint32) // 257).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ValueError(f"APS frame: unsupported dtype {image.dtype} ({encoding})")
    return image


def _resize_hw(a: np.ndarray, size: tuple[int, int] | None, nearest: bool) -> np.ndarray:
    if size is None or tuple(a.shape[-2:]) == tuple(size):
        return a
    import cv2

    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    if a.ndim == 2:
        return cv2.resize(a, (size[1], size[0]), interpolation=interp)
    return np.stack([cv2.resize(c, (size[1], size[0]), interpolation=interp) for c in a])


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


def open_cache(path: str | os.PathLike) -> PairCache:
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise ValueError(f"{path}: not a training-pair cache (no meta.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: cache format {meta.get('version')}, this code reads {FORMAT_VERSION}")
    arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
    return PairCache(path=path, meta=meta, **arrays)


def _frames(bag: str, data_cfg: dict) -> tuple[list[tuple[int, np.ndarray]], dict[int, np.ndarray]]:
    from ..io.bag import iter_images, topics

    frames = [(m.stamp_ns, to_gray_u8(m.image, m.encoding)) for m in iter_images(bag, data_cfg["image_topic"])]
    labels: dict[int, np.ndarray] = {}
    if data_cfg.get("labels_topic") and data_cfg["labels_topic"] in topics(bag):
        for m in iter_images(bag, data_cfg["labels_topic"]):
            if m.image.ndim != 2 or m.image.dtype != np.uint8:
                raise ValueError(f"{bag}: labels on {data_cfg['labels_topic']} must be mono8, got {m.encoding}")
            labels[m.stamp_ns] = m.image
    return frames, labels


def extract_pairs(bags: Sequence[str], data_cfg: dict, cache_root: str | os.PathLike | None = None,
                  progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Extract (or find) the cache for `bags` under `cache_root` (default data_cfg['cache_dir'])."""
    from tqdm import tqdm

    from ..events import embeddings_at
    from ..io.bag import iter_events

    if not bags:
        raise ValueError("no training bags given (set data.bags in the config or pass --bags)")
    root = Path(cache_root or data_cfg["cache_dir"]).expanduser()
    key = cache_key(bags, data_cfg)
    final = root / key
    if (final / "meta.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        per_bag = []
        total = 0
        for bag in bags:
            frames, labels = _frames(bag, data_cfg)
            if not frames:
                raise ValueError(f"{bag}: no APS frames on {data_cfg['image_topic']}")
            per_bag.append((frames, labels))
            total += len(frames)
        size = tuple(data_cfg["resize"]) if data_cfg.get("resize") else per_bag[0][0][0][1].shape
        params = dict(data_cfg.get("representation_params") or {})
        arrays = None
        n = 0
        ranges = []
        bar = tqdm(total=total, desc="extract pairs", unit="frame", disable=not progress)
        for bi, (bag, (frames, labels)) in enumerate(zip(bags, per_bag)):
            sensor_hw = frames[0][1].shape
            start = n
            ends = np.array([s for s, _ in frames], dtype=np.int64)
            if np.any(np.diff(ends) < 0):
                raise ValueError(f"{bag}: APS stamps go backwards on {data_cfg['image_topic']}")
            gen = embeddings_at(
                iter_events(bag, data_cfg["events_topic"]), ends, data_cfg["representation"],
                height=sensor_hw[0], width=sensor_hw[1], window_ns=data_cfg.get("window_ns"),
                window_events=data_cfg.get("window_events"), **params)
            for (stamp, gray), (t_end, emb, n_ev) in zip(frames, gen):
                if int(t_end) != int(stamp):
                    raise RuntimeError(f"{bag}: embedding window ends at {t_end}, frame at {stamp}")
                if n_ev < int(data_cfg.get("min_events") or 0):
                    bar.update(1)
                    continue
                emb = _resize_hw(np.asarray(emb, np.float32), size, nearest=False)
                if arrays is None:
                    arrays = _allocate(tmp, total, emb.shape[0], size)
                arrays["events"][n] = emb
                arrays["aps"][n] = _resize_hw(gray, size, nearest=False)
                lab = labels.get(int(stamp))
                arrays["has_label"][n] = lab is not None
                arrays["labels"][n] = IGNORE_INDEX if lab is None else _resize_hw(lab, size, nearest=True)
                arrays["t_ns"][n], arrays["n_events"][n], arrays["bag_index"][n] = stamp, n_ev, bi
                n += 1
                bar.update(1)
            ranges.append([start, n])
        bar.close()
        if arrays is None or n == 0:
            raise ValueError(f"no training pairs extracted from {len(bags)} bag(s) (min_events too high?)")
        for a in arrays.values():
            a.flush()
        del arrays
        if n < total:  # frames skipped for too few events: rewrite trimmed
            for name in _ARRAYS:
                full = np.load(tmp / f"{name}.npy", mmap_mode="r")
                np.save(tmp / f"{name}.tmp.npy", np.ascontiguousarray(full[:n]))
                del full
                os.replace(tmp / f"{name}.tmp.npy", tmp / f"{name}.npy")
        has = np.load(tmp / "has_label.npy")
        meta = dict(_key_inputs(bags, data_cfg), n=n, height=int(size[0]), width=int(size[1]),
                    channels=int(np.load(tmp / "events.npy", mmap_mode="r").shape[1]),
                    labelled=int(has.sum()), bag_ranges=ranges, created=time.time())
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.replace(tmp, final)
        except OSError:  # another process won the race: keep theirs
            if not (final / "meta.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"cached {n} pairs ({meta['labelled']} labelled) from {len(bags)} bag(s) -> {final}")
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _allocate(tmp: Path, n: int, channels: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
    H, W = size
    spec = {
        "events": ((n, channels, H, W), np.float32), "aps": ((n, H, W), np.uint8),
        "labels": ((n, H, W), np.uint8), "has_label": ((n,), np.bool_), "t_ns": ((n,), np.int64),
        "n_events": ((n,), np.int64), "bag_index": ((n,), np.int32),
    }
    return {name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dt, shape=shape)
            for name, (shape, dt) in spec.items()}
