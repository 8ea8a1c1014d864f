"""ESS's preprocessed DDD17 (Sun et al., ECCV'22, uzh-rpg/ess): reader and a writer for tests/tools.

Layout, one directory per recording (``<root>/dir*/`` or the directory itself):

    events.dat.t                  int64 event times in ns, raw (memory-mapped)
    events.dat.xyp                int16 (N, 3) x, y, polarity (0/1), raw
    index/index_{10,50,250}ms.npy (F, 3) int64 rows [frame t ns, index of the first event
                                  after the frame, index where the window of that length starts]
    segmentation_masks/segmentation_<k>.png   346 x 200 labels (Ev-SegNet's) of frame k-1
    imgs/img_<k>.png              optional decoded video frames (346 x 260 grey), cropped to 200 rows

Splits, as ESS's loader takes the sorted directories: train = dirs 0,2,3,5,6, valid = 1,
test = 4 (needs seven); "all" takes every directory.

API:
    iter_ess(root, split="test", *, event_input=None) -> Iterator[Sample]   (DEFAULT_EVENT_INPUT)
        events: the window [index[k-1, 2], index[k-1, 1]) (or the `window_events` events before
        index[k-1, 1]) embedded on the full 260 x 346 sensor, cropped to the label's rows;
        t_ns: the frame time.
    write_ess_recording(dir, events, frame_times_ns, labels, images=None, windows_ms=(50,)) -> None
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..events.representations import embed
from ..events.spec import DEFAULT_EVENT_INPUT, ByCount, EventInput
from ..events.types import Events
from .png import read_png, write_png
from .sample import Sample, validate_label

SENSOR = (260, 346)
ESS_SPLITS = {"train": (0, 2, 3, 5, 6), "valid": (1,), "test": (4,)}


def _recording_dirs(root: Path, split: str) -> list[Path]:
    if not root.is_dir():
        raise ValueError(f"no such directory: {root}")
    if (root / "events.dat.t").is_file():
        return [root]
    dirs = sorted(d for d in root.glob("dir*") if d.is_dir())
    if not dirs:
        raise ValueError(f"{root}: not an ESS DDD17 dataset (no events.dat.t and no dir*/ recordings)")
    if split == "all":
        return dirs
    if split not in ESS_SPLITS:
        raise ValueError(f"unknown ESS split {split!r}; known: all, {', '.join(ESS_SPLITS)}")
    if len(dirs) != 7:
        raise ValueError(f"{root}: ESS splits need the 7 DDD17 recordings, found {len(dirs)}; use split='all'")
    return [dirs[i] for i in ESS_SPLITS[split]]


def load_events(d: Path) -> tuple[np.ndarray, np.ndarray]:
    """Memory maps (t (N,), xyp (N, 3)) of one recording; ValueError on inconsistent sizes."""
    tf, xf = d / "events.dat.t", d / "events.dat.xyp"
    for f in (tf, xf):
        if not f.is_file():
            raise ValueError(f"{d}: missing {f.name}")
    n = tf.stat().st_size // 8
    if tf.stat().st_size % 8 or xf.stat().st_size != n * 6:
        raise ValueError(f"{d}: events.dat.t ({tf.stat().st_size} B) and events.dat.xyp ({xf.stat().st_size} B) "
                         f"do not hold the same number of events (8 and 6 bytes each)")
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, 3), np.int16)
    return np.memmap(tf, dtype="<i8", mode="r", shape=(n,)), np.memmap(xf, dtype="<i2", mode="r", shape=(n, 3))


def iter_ess(root: str | os.PathLike, split: str = "test", *, event_input: EventInput | None = None
             ) -> Iterator[Sample]:
    """`event_input` (default: the package's DEFAULT_EVENT_INPUT) sets the representation, its
    parameters and the window (ByTime: its length, one of ESS's 10, 50, 250 ms; ByCount: the last
    that many events)."""
    spec = event_input or DEFAULT_EVENT_INPUT
    representation, params = spec.representation, dict(spec.params)
    window_events, window_ms = None, 50
    if isinstance(spec.window, ByCount):
        window_events = spec.window.events
    else:
        window_ms = int(round(spec.window.window_ns / 1e6))

    for d in _recording_dirs(Path(root), split):
        t_all, xyp_all = load_events(d)
        index_file = d / "index" / f"index_{window_ms}ms.npy"
        if not index_file.is_file():
            raise ValueError(f"{d}: missing {index_file.relative_to(d)} (window_ms is 10, 50 or 250)")
        index = np.load(index_file)
        if index.ndim != 2 or index.shape[1] < 2:
            raise ValueError(f"{index_file}: expected (frames, 3) rows [t_ns, event index, window start]")
        masks = sorted((d / "segmentation_masks").glob("*.png"))
        if not masks:
            raise ValueError(f"{d}: no segmentation_masks/*.png")
        for mask in masks:
            try:
                k = int(mask.stem.split("_")[-1]) - 1
            except ValueError:
                raise ValueError(f"{mask}: mask names end in _<frame number>.png") from None
            if not 0 <= k < len(index):
                raise ValueError(f"{mask}: frame {k + 1} is not in {index_file.name} ({len(index)} frames)")
            label = validate_label(read_png(mask, what="ESS segmentation mask"), str(mask))
            t_frame, i1 = int(index[k, 0]), int(index[k, 1])
            if window_events is not None or index.shape[1] < 3:
                i0 = max(i1 - (window_events or 0), 0)
            else:
                i0 = max(int(index[k, 2]), 0)
            if not 0 <= i0 <= i1 <= len(t_all):
                raise ValueError(f"{index_file}: frame {k + 1} window [{i0}, {i1}) outside the {len(t_all)} events")
            xyp = np.asarray(xyp_all[i0:i1])
            ev = Events(xyp[:, 0], xyp[:, 1], np.asarray(t_all[i0:i1]), xyp[:, 2])
            if len(ev) and not ev.in_bounds(*SENSOR).all():
                raise ValueError(f"{d}: events of frame {k + 1} lie outside the {SENSOR[1]}x{SENSOR[0]} sensor")
            emb = embed(ev, representation, height=SENSOR[0], width=SENSOR[1], **params)
            rows = label.shape[0]
            aps = None
            img_file = d / "imgs" / f"img_{mask.stem.split('_')[-1]}.png"
            if img_file.is_file():
                img = read_png(img_file, what="ESS frame")
                aps = np.ascontiguousarray((img[..., 0] if img.ndim == 3 else img)[:rows])
            yield Sample(f"{d.name}_{mask.stem}", t_frame, np.ascontiguousarray(emb[:, :rows]), aps, label, len(ev))


def write_ess_recording(
    d: str | os.PathLike,
    events: Events,
    frame_times_ns: Sequence[int],
    labels: dict[int, np.ndarray],
    images: dict[int, np.ndarray] | None = None,
    windows_ms: Sequence[int] = (50,),
) -> None:
    """Write one recording in ESS's layout. `labels` / `images` map frame index k -> array (named k+1)."""
    d = Path(d)
    (d / "index").mkdir(parents=True, exist_ok=True)
    events.t.astype("<i8").tofile(d / "events.dat.t")
    np.stack([events.x.astype(np.int16), events.y.astype(np.int16), (events.p > 0).astype(np.int16)], 1) \
        .astype("<i2").tofile(d / "events.dat.xyp")
    ft = np.asarray(frame_times_ns, dtype=np.int64)
    end = np.searchsorted(events.t, ft, side="right")
    for w in windows_ms:
        start = np.searchsorted(events.t, ft - w * 1_000_000, side="left")
        np.save(d / "index" / f"index_{w}ms.npy", np.stack([ft, end, start], 1).astype(np.int64))
    for k, lab in labels.items():
        write_png(d / "segmentation_masks" / f"segmentation_{k + 1:08d}.png", validate_label(lab, f"label {k}"))
    for k, img in (images or {}).items():
        write_png(d / "imgs" / f"img_{k + 1:08d}.png", img)
