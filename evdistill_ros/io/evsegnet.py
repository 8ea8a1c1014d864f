"""The Ev-SegNet DDD17 split (Alonso & Murillo, CVPRW'19): reader and writer.

Layout (both orders occur: the paper's loader documents the first, its generator writes the second):

    <root>/<split>/{images,labels,events}/<name>.{png,png,npy}
    <root>/{images,labels,events}/<split>/<name>.{png,png,npy}

images: 346 x 200 grey APS PNG; labels: 346 x 200 grey PNG, ids 0..5, 255 = ignore;
events: float (200, 346, 6) .npy, channels as Ev-SegNet's show_events.py reads them:
[ON count, OFF count, ON mean t, ON std t, OFF mean t, OFF std t] over a 50 ms window.
Values are read and written unchanged (their loader, utils/Loader.py, does not rescale them
either). The released files hold counts and means in [-1, 1] (-1 = no event) and stds in
[0, 1]; files written here hold our `evsegnet_6ch` (raw counts, t in [0, 1) of the window),
same channel order, different scaling (see `evdistill_ros.events.representations`).

API:
    find_split_dirs(root, split) -> {"images": Path, "labels": Path, "events": Path}
    iter_evsegnet(root, split="test") -> Iterator[Sample]    events (6, H, W) float32, file order kept
    write_evsegnet_sample(root, split, name, events_chw, aps, label) -> None   (first layout)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .evdistill_png import matched_files
from .png import read_png, write_png
from .sample import Sample, validate_label

KINDS = ("images", "labels", "events")


def find_split_dirs(root: str | os.PathLike, split: str) -> dict[str, Path]:
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"no such directory: {root}")
    for dirs in ({k: root / split / k for k in KINDS}, {k: root / k / split for k in KINDS}):
        if all(d.is_dir() for d in dirs.values()):
            return dirs
    raise ValueError(f"{root}: not an Ev-SegNet dataset with split {split!r}; expected "
                     f"{split}/{{images,labels,events}} or {{images,labels,events}}/{split}")


def write_evsegnet_sample(root: str | os.PathLike, split: str, name: str, events_chw: np.ndarray,
                          aps: np.ndarray, label: np.ndarray | None) -> None:
    """Write images/, labels/ (when given) and events/ (.npy, (H, W, C) float32) of one sample."""
    root = Path(root) / split
    events_chw = np.asarray(events_chw)
    if events_chw.ndim != 3:
        raise ValueError(f"write_evsegnet_sample: events must be (C, H, W), got {events_chw.shape}")
    write_png(root / "images" / f"{name}.png", aps)
    if label is not None:
        write_png(root / "labels" / f"{name}.png", validate_label(label, f"label of {name}"))
    (root / "events").mkdir(parents=True, exist_ok=True)
    np.save(root / "events" / f"{name}.npy", np.ascontiguousarray(events_chw.transpose(1, 2, 0), dtype=np.float32))


def iter_evsegnet(root: str | os.PathLike, split: str = "test") -> Iterator[Sample]:
    dirs = find_split_dirs(root, split)
    pairs = matched_files({"image": dirs["images"], "label": dirs["labels"], "events": dirs["events"]},
                          {"image": ".png", "label": ".png", "events": ".npy"}, f"Ev-SegNet dataset {root}")
    for name, files in pairs:
        aps = read_png(files["image"], what="Ev-SegNet image")
        if aps.ndim == 3 and np.array_equal(aps[..., 0], aps[..., 1]) and np.array_equal(aps[..., 0], aps[..., 2]):
            aps = np.ascontiguousarray(aps[..., 0])
        label = validate_label(read_png(files["label"], what="label"), str(files["label"]))
        try:
            ev = np.load(files["events"], allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{files['events']}: not a numeric .npy array ({exc})") from None
        if ev.ndim != 3 or ev.shape[:2] != label.shape:
            raise ValueError(f"{files['events']}: events {ev.shape} do not match (H, W, C) with H x W = label {label.shape}")
        if aps.shape[:2] != label.shape:
            raise ValueError(f"{files['image']}: image {aps.shape[:2]} and label {label.shape} differ in size")
        yield Sample(name, None, np.ascontiguousarray(ev.transpose(2, 0, 1), dtype=np.float32), aps, label)
