"""The EvDistill released test layout: side-by-side event | APS PNGs and label PNGs (reader and writer).

    <root>/images/<split>/<name>.png   RGB, 2W x H: left half the event image, right half the APS
    <root>/labels/<split>/<name>.png   grey, W x H, class ids 0..5, 255 = ignore

Released data: W x H = 346 x 200 (DDD17 frames without the bottom 60 rows). Event half:
R = ON counts, G = OFF counts, each scaled by its own maximum to 0..255 (rounded to
nearest), B = 0. The APS half is the grey frame in all three channels.

API:
    event_image(counts) -> (H, W, 3) uint8      counts (2, H, W) [ON, OFF] -> R, G, B=0
    compose(event_rgb, aps) -> (H, 2W, 3) uint8 side by side (aps grey or RGB)
    split_halves(image) -> (event_rgb, aps_rgb)
    write_evdistill_sample(root, split, name, counts, aps, label) -> None
    iter_evdistill_png(root, split="test") -> Iterator[Sample]
        Sample.events is (3, H, W) float32 = (R, G, B=0) / 255, what the released networks see
        and what ``embed(events, "evdistill_2ch", quantize=True)`` computes from raw events;
        aps is (H, W) uint8 when the three channels are equal, else RGB; t_ns is None.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .png import read_png, write_png
from .sample import Sample, validate_label


def event_image(counts: np.ndarray) -> np.ndarray:
    """(2, H, W) per-polarity counts [ON, OFF] -> (H, W, 3) uint8: R, G each scaled by its own max."""
    counts = np.asarray(counts)
    if counts.ndim != 3 or counts.shape[0] != 2:
        raise ValueError(f"event_image: counts must be (2, H, W) [ON, OFF], got {counts.shape}")
    out = np.zeros(counts.shape[1:] + (3,), dtype=np.uint8)
    for c in range(2):
        m = float(counts[c].max()) if counts[c].size else 0.0
        if m > 0:
            out[..., c] = np.floor(counts[c].astype(np.float64) * (255.0 / m) + 0.5).astype(np.uint8)
    return out


def compose(event_rgb: np.ndarray, aps: np.ndarray) -> np.ndarray:
    """Side-by-side image: event half left, APS half (grey replicated to RGB) right."""
    aps = np.asarray(aps)
    if aps.dtype != np.uint8:
        raise ValueError(f"compose: APS must be uint8, got {aps.dtype} (convert mono16 with evdistill_ros.frames.to_u8)")
    if aps.ndim == 2:
        aps = np.repeat(aps[:, :, None], 3, axis=2)
    if event_rgb.shape != aps.shape:
        raise ValueError(f"compose: event half {event_rgb.shape} and APS half {aps.shape} differ in size")
    return np.concatenate([event_rgb, aps], axis=1)


def split_halves(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[1] % 2:
        raise ValueError(f"a side-by-side EvDistill image is (H, 2W, 3) RGB, got {image.shape}")
    w = image.shape[1] // 2
    return image[:, :w], image[:, w:]


def write_evdistill_sample(root: str | os.PathLike, split: str, name: str, counts: np.ndarray,
                           aps: np.ndarray, label: np.ndarray | None) -> None:
    """Write one sample: images/<split>/<name>.png and, when given, labels/<split>/<name>.png."""
    root = Path(root)
    write_png(root / "images" / split / f"{name}.png", compose(event_image(counts), aps))
    if label is not None:
        write_png(root / "labels" / split / f"{name}.png", validate_label(label, f"label of {name}"))


def _stems(d: Path, ext: str) -> dict[str, Path]:
    return {p.stem: p for p in sorted(d.glob(f"*{ext}"))}


def matched_files(dirs: dict[str, Path], exts: dict[str, str], where: str) -> list[tuple[str, dict[str, Path]]]:
    """Files with the same stem in every directory of `dirs`; ValueError on missing dirs or unmatched names."""
    for kind, d in dirs.items():
        if not d.is_dir():
            raise ValueError(f"{where}: missing directory {d}")
    found = {kind: _stems(d, exts[kind]) for kind, d in dirs.items()}
    names = set().union(*found.values())
    for kind, files in found.items():
        missing = sorted(names - files.keys())
        if missing:
            raise ValueError(f"{where}: {len(missing)} name(s) have no {kind} file in {dirs[kind]}, "
                             f"e.g. {missing[0]}{exts[kind]}")
    if not names:
        raise ValueError(f"{where}: no samples in {', '.join(str(d) for d in dirs.values())}")
    return [(n, {k: found[k][n] for k in dirs}) for n in sorted(names)]


def iter_evdistill_png(root: str | os.PathLike, split: str = "test") -> Iterator[Sample]:
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"no such directory: {root}")
    pairs = matched_files({"image": root / "images" / split, "label": root / "labels" / split},
                          {"image": ".png", "label": ".png"}, f"EvDistill PNG dataset {root}")
    for name, files in pairs:
        img = read_png(files["image"], what="EvDistill image")
        ev_rgb, aps_rgb = split_halves(img)
        if ev_rgb.dtype != np.uint8:
            raise ValueError(f"{files['image']}: expected an 8-bit RGB PNG, got {ev_rgb.dtype}")
        label = validate_label(read_png(files["label"], what="label"), str(files["label"]))
        if label.shape != ev_rgb.shape[:2]:
            raise ValueError(f"{files['label']}: label {label.shape[1]}x{label.shape[0]} does not match "
                             f"the image halves {ev_rgb.shape[1]}x{ev_rgb.shape[0]}")
        grey = np.array_equal(aps_rgb[..., 0], aps_rgb[..., 1]) and np.array_equal(aps_rgb[..., 0], aps_rgb[..., 2])
        events = np.ascontiguousarray(ev_rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
        yield Sample(name, None, events, np.ascontiguousarray(aps_rgb[..., 0] if grey else aps_rgb), label)
