"""MVSEC HDF5 (`*_data.hdf5`) -> ROS1 bag, streaming.

MVSEC layout (one group per camera, ``davis/left`` and ``davis/right``):

    davis/<cam>/events               (N, 4) float64: x, y, t (seconds, ROS epoch time), p in {-1, +1}
    davis/<cam>/image_raw            (F, 260, 346) uint8
    davis/<cam>/image_raw_ts         (F,) float64 seconds
    davis/<cam>/image_raw_event_inds (F,) int64 (index of the event nearest each frame; unused)

API:
    seconds_to_ns(t) -> int64 ns          float64 seconds -> nanoseconds, rounded to the microsecond
    ns_to_seconds(t) -> float64 seconds   the inverse used when writing MVSEC-layout files
    convert_mvsec(src, dst, *, camera="left", topics=PRESETS["mvsec"], period_ns=33_333_333,
                  max_events=None, chunk=1_000_000, progress=True) -> dict of counts

Timestamps: DAVIS clocks tick in microseconds and MVSEC stored ROS times (whole µs) as float64
seconds. A float64 near 1.5e9 s resolves ~0.24 µs, so the nearest microsecond of the stored
double is the recorded microsecond (for any time before ~2100); `seconds_to_ns` computes that
nearest microsecond exactly (whole seconds and fraction apart, no rounding in between) and
returns it in nanoseconds. Sub-microsecond parts of a timestamp are not
representable in this format and are rounded away (the round-trip tests pin this down).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..events.types import Events
from .bag_writer import BagWriter
from .packing import EventPacker
from .presets import PRESETS, TopicPreset


def seconds_to_ns(t: np.ndarray) -> np.ndarray:
    """float64 seconds -> int64 ns, rounded to the nearest microsecond (see module doc)."""
    t = np.asarray(t, dtype=np.float64)
    sec = np.floor(t)
    # t - floor(t) is exact, and the fraction of a double above 1 s has so few bits that
    # frac * 1e6 is exact too: the rounding below is the true nearest microsecond (ties to even)
    us = sec.astype(np.int64) * 1_000_000 + np.rint((t - sec) * 1e6).astype(np.int64)
    return us * 1000


def ns_to_seconds(t: np.ndarray) -> np.ndarray:
    """int64 ns -> float64 seconds (split in whole seconds and remainder to keep precision)."""
    t = np.asarray(t, dtype=np.int64)
    sec, rem = np.divmod(t, 1_000_000_000)
    return sec.astype(np.float64) + rem.astype(np.float64) * 1e-9


def _decode_event_rows(rows: np.ndarray, height: int, width: int, where: str) -> Events:
    if rows.ndim != 2 or rows.shape[1] != 4:
        raise ValueError(f"{where}: expected (N, 4) rows x, y, t, p; got shape {rows.shape}")
    x, y, t, p = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    xi, yi = x.astype(np.int64), y.astype(np.int64)
    if len(rows) and (np.any(xi != x) or np.any(yi != y) or xi.min() < 0 or yi.min() < 0
                      or xi.max() >= width or yi.max() >= height):
        raise ValueError(f"{where}: event coordinates are not integers inside {width}x{height}")
    return Events(xi, yi, seconds_to_ns(t), (p > 0).astype(np.int8))


def open_mvsec(path: str | os.PathLike, camera: str = "left"):
    """Open an MVSEC data file; returns (h5py.File, group) or raises ValueError naming what is missing."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such MVSEC file: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not an HDF5 file ({exc})") from exc
    key = f"davis/{camera}"
    if key not in f or "events" not in f[key]:
        f.close()
        raise ValueError(f"{path}: not an MVSEC data file (no {key}/events; the *_gt.hdf5 files hold no events)")
    return f, f[key]


def convert_mvsec(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    camera: str = "left",
    topics: TopicPreset = PRESETS["mvsec"],
    period_ns: int | None = 33_333_333,
    max_events: int | None = None,
    chunk: int = 1_000_000,
    progress: bool = True,
) -> dict:
    """Convert an MVSEC data file to a bag with events (EventArray) and frames (mono8)."""
    from tqdm import tqdm

    f, grp = open_mvsec(src, camera)
    with f:
        ev_ds = grp["events"]
        images = grp["image_raw"] if "image_raw" in grp else None
        if images is not None and "image_raw_ts" not in grp:
            raise ValueError(f"{src}: davis/{camera}/image_raw has no image_raw_ts")
        height, width = (int(images.shape[1]), int(images.shape[2])) if images is not None else (260, 346)
        frame_ts = seconds_to_ns(grp["image_raw_ts"][:]) if images is not None else np.empty(0, np.int64)
        if images is not None and len(frame_ts) != len(images):
            raise ValueError(f"{src}: {len(images)} frames but {len(frame_ts)} image_raw_ts")
        if np.any(np.diff(frame_ts) < 0):
            raise ValueError(f"{src}: davis/{camera}/image_raw_ts is not sorted")
        n = int(ev_ds.shape[0])
        next_frame = 0

        with BagWriter(dst) as writer:

            def frames_until(stamp: int | None) -> None:
                nonlocal next_frame
                end = len(frame_ts) if stamp is None else int(np.searchsorted(frame_ts, stamp, side="right"))
                for i in range(next_frame, end):
                    writer.write_image(topics.image, int(frame_ts[i]), np.asarray(images[i]), "mono8")
                next_frame = max(next_frame, end)

            packer = EventPacker(writer, topics.events, height, width, period_ns=period_ns,
                                 max_events=max_events, before_message=frames_until)
            with tqdm(total=n, unit="ev", unit_scale=True, disable=not progress, desc="mvsec events") as bar:
                for i0 in range(0, n, chunk):
                    rows = ev_ds[i0 : i0 + chunk]
                    packer.add(_decode_event_rows(rows, height, width, f"{src} events[{i0}:{i0 + len(rows)}]"))
                    bar.update(len(rows))
                packer.flush()
            frames_until(None)
    return {"events": packer.events, "messages": packer.messages, "frames": int(len(frame_ts)),
            "height": height, "width": width}
