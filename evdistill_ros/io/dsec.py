"""DSEC-Semantic (Gehrig et al. RA-L'21; labels by Sun et al., ESS, ECCV'22): reader, and a
writer in the published layout for tests and tools.

Layout of one sequence (e.g. zurich_city_00_a), as DSEC and ESS distribute it:

    events/left/events.h5         events/{x, y} uint16 (distorted sensor pixels), events/t uint32 µs
                                  since t_offset, events/p uint8 0/1; ms_to_idx uint64 (first event
                                  index at each millisecond); t_offset int64 µs. Compressed with
                                  Blosc/zstd through hdf5plugin (imported here, so h5py reads them)
    events/left/rectify_map.h5    rectify_map (480, 640, 2) float32: (x, y) distorted -> rectified
    semantic/left/11classes/data/*.png   640 x 440 labels (the bottom 40 rows are cut: the car's hood)
    semantic/left/19classes/data/*.png   the same in Cityscapes' 19 train ids
    semantic/timestamps.txt       µs, one per label (the clock of t + t_offset)
    images/left/ev_inf/*.png      optional: the frames warped into the event camera's view (ESS)

(`semantic/<n>classes/data`, without `left/`, is read too.) A dataset root holds
`train/<sequence>/` and `test/<sequence>/`; ESS trains on every train sequence (ESS_SPLITS lists
them) and reports the three test sequences.

    iter_dsec(root, split="test", *, classes=11, event_input=None, label_every=1, images=True)
        -> Iterator[Sample]
        events: the window ending at each label's time (the typed event input: by time or by
        count), rectified through the map (rounded to the nearest pixel) and embedded on the
        labelled 440 x 640 (events that land off the sensor or below row 440, the hood ESS cuts,
        are dropped and counted, so a count window counts events on the labelled area; ESS
        counts before cutting); label: the PNG (class set dsec11 or dsec19); aps: the ev_inf
        frame (grey or RGB, cut to 440 rows) when present. Streams: the h5 is read in chunks
        from the first window's start (found through ms_to_idx), never whole. The same events
        go into `convert_dsec`'s bags, so training from either gives the same windows.
    sequences(root, split) -> list[Path]
    write_dsec_sequence(dir, events, timestamps_us, labels11=..., labels19=..., rectify_map=None,
                        images=None, t_offset_us=0) -> Path
    convert_dsec(sequence, out_bag, classes=11, topics=PRESETS["dsec"]) -> dict
        a ROS1 bag of the sequence for the live nodes and training: rectified events on the
        labelled 440 x 640 (dvs_msgs/EventArray), the ev_inf frames and the labels (mono8) at
        the label times
    sequence_info(path) -> dict    what `evdistill info` prints for a sequence or a root
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..classes import DSEC11, DSEC19, ClassSet
from ..events.spec import DEFAULT_EVENT_INPUT, ByCount, EventInput
from ..events.types import Events
from .bag_writer import BagWriter
from .packing import EventPacker
from .png import read_png, write_png
from .presets import PRESETS
from .sample import Sample

SENSOR = (480, 640)
LABEL_ROWS = 440  # ESS cuts the bottom 40 rows (the car's hood) from events and labels
CHUNK_EVENTS = 1 << 20
ESS_SPLITS = {
    "train": ("zurich_city_00_a", "zurich_city_01_a", "zurich_city_02_a", "zurich_city_04_a", "zurich_city_05_a",
              "zurich_city_06_a", "zurich_city_07_a", "zurich_city_08_a"),
    "test": ("zurich_city_13_a", "zurich_city_14_c", "zurich_city_15_a"),
}
CLASS_SETS = {11: DSEC11, 19: DSEC19}


def _h5py():
    import h5py  # on use: the rest of io reads bags without h5py
    import hdf5plugin  # noqa: F401  (registers the Blosc / zstd filters DSEC's files are written with)

    return h5py


def is_sequence(path: Path) -> bool:
    return (path / "events" / "left" / "events.h5").is_file()


def is_dsec(path: Path) -> bool:
    """A DSEC sequence folder, or a root with train/ or test/ sequences."""
    return is_sequence(path) or any(
        d.is_dir() and is_sequence(d) for s in ("train", "test") if (path / s).is_dir() for d in (path / s).iterdir())


def sequences(root: str | os.PathLike, split: str = "test") -> list[Path]:
    """The sequence folders of a split ("train", "test", "all"), or `root` itself when it is one."""
    root = Path(root)
    if is_sequence(root):
        return [root]
    if split not in ("train", "test", "all"):
        raise ValueError(f"unknown DSEC split {split!r}; known: train, test, all")
    parts = ("train", "test") if split == "all" else (split,)
    found = sorted(d for s in parts if (root / s).is_dir() for d in (root / s).iterdir() if is_sequence(d))
    if not found:
        raise ValueError(f"{root}: no DSEC sequences (<split>/<sequence>/events/left/events.h5) for split {split!r}")
    return found


def _label_dir(seq: Path, classes: int) -> Path:
    for d in (seq / "semantic" / "left" / f"{classes}classes" / "data", seq / "semantic" / f"{classes}classes" / "data"):
        if d.is_dir():
            return d
    raise ValueError(f"{seq}: no semantic/left/{classes}classes/data/ (DSEC-Semantic labels)")


class EventFile:
    """One events.h5, opened once: checked layout, chunked reads in absolute ns, rectification."""

    def __init__(self, seq: Path):
        h5py = _h5py()
        path = seq / "events" / "left" / "events.h5"
        try:
            self.h5 = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from None
        self.path = path
        try:
            ev = self.h5["events"]
            self.x, self.y, self.t, self.p = ev["x"], ev["y"], ev["t"], ev["p"]
            self.ms_to_idx = np.asarray(self.h5["ms_to_idx"], dtype=np.int64)
            self.t_offset_us = int(np.asarray(self.h5["t_offset"])) if "t_offset" in self.h5 else 0
        except (KeyError, TypeError) as exc:
            self.close()
            raise ValueError(f"{path}: not a DSEC events file (events/{{x,y,t,p}}, ms_to_idx, t_offset): {exc}") from None
        self.n = len(self.t)
        if not (len(self.x) == len(self.y) == len(self.p) == self.n):
            self.close()
            raise ValueError(f"{path}: events/x, y, t, p differ in length")
        if self.ms_to_idx.ndim != 1 or np.any(np.diff(self.ms_to_idx) < 0) or (
                len(self.ms_to_idx) and (self.ms_to_idx[0] < 0 or self.ms_to_idx[-1] > self.n)):
            self.close()
            raise ValueError(f"{path}: ms_to_idx is not a non-decreasing index into the {self.n} events")
        map_path = seq / "events" / "left" / "rectify_map.h5"
        try:
            with h5py.File(map_path, "r") as f:
                rmap = np.asarray(f["rectify_map"], dtype=np.float32)
        except (OSError, KeyError) as exc:
            self.close()
            raise ValueError(f"{map_path}: no readable rectify_map ({exc})") from None
        if rmap.shape != SENSOR + (2,):
            self.close()
            raise ValueError(f"{seq}/events/left/rectify_map.h5: rectify_map is {rmap.shape}, expected (480, 640, 2)")
        # nearest rectified pixel of every sensor pixel; off the sensor or below the labelled rows
        # (the hood) it becomes an out-of-bounds x, dropped and counted by the windows
        rx, ry = np.rint(rmap[..., 0]), np.rint(rmap[..., 1])
        ok = (rx >= 0) & (rx < SENSOR[1]) & (ry >= 0) & (ry < LABEL_ROWS)
        self.rect_x = np.where(ok, rx, SENSOR[1]).astype(np.uint16)  # SENSOR[1]: out of bounds, dropped
        self.rect_y = np.where(ok, ry, 0).astype(np.uint16)

    def index_at_us(self, t_us: int) -> int:
        """An event index at or before the first event at absolute time `t_us` (via ms_to_idx)."""
        ms = (int(t_us) - self.t_offset_us) // 1000
        if ms <= 0 or not len(self.ms_to_idx):
            return 0
        return int(self.ms_to_idx[min(ms, len(self.ms_to_idx) - 1)])

    def chunks(self, start: int, chunk: int = CHUNK_EVENTS) -> Iterator[Events]:
        """Rectified events from index `start` to the end, `chunk` at a time; t in absolute ns."""
        for i in range(start, self.n, chunk):
            j = min(i + chunk, self.n)
            x = np.asarray(self.x[i:j]).astype(np.int64)
            y = np.asarray(self.y[i:j]).astype(np.int64)
            inside = (x < SENSOR[1]) & (y < SENSOR[0])  # untrusted file: index the map only inside
            xi, yi = np.where(inside, x, 0), np.where(inside, y, 0)
            xr = np.where(inside, self.rect_x[yi, xi], SENSOR[1])
            yr = np.where(inside, self.rect_y[yi, xi], 0)
            t_ns = (np.asarray(self.t[i:j]).astype(np.int64) + self.t_offset_us) * 1000
            yield Events(xr, yr, t_ns, np.asarray(self.p[i:j]).astype(np.int8))

    def close(self) -> None:
        self.h5.close()


def iter_dsec(root: str | os.PathLike, split: str = "test", *, classes: int = 11,
              event_input: EventInput | None = None, label_every: int = 1, images: bool = True,
              need_events: bool = True) -> Iterator[Sample]:
    """Samples of DSEC-Semantic sequences (see the module doc)."""
    if classes not in CLASS_SETS:
        raise ValueError(f"DSEC-Semantic labels come in 11 or 19 classes, not {classes}")
    if label_every < 1:
        raise ValueError(f"label_every must be >= 1, got {label_every}")
    spec = event_input or DEFAULT_EVENT_INPUT
    for seq in sequences(root, split):
        yield from _sequence_samples(seq, CLASS_SETS[classes], spec, label_every, images, need_events)


def _sequence_samples(seq: Path, classes: ClassSet, spec: EventInput, label_every: int, images: bool,
                      need_events: bool) -> Iterator[Sample]:
    ts_file = seq / "semantic" / "timestamps.txt"
    try:
        ts_us = np.loadtxt(ts_file, dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{ts_file}: cannot read the label timestamps (µs, one per line): {exc}") from None
    labels = sorted(_label_dir(seq, classes.num_classes).glob("*.png"))
    if len(labels) != len(ts_us):
        raise ValueError(f"{seq}: {len(labels)} label PNGs but {len(ts_us)} timestamps in {ts_file.name}")
    if len(ts_us) > 1 and np.any(np.diff(ts_us) < 0):
        raise ValueError(f"{ts_file}: timestamps go backwards")
    frames = sorted((seq / "images" / "left" / "ev_inf").glob("*.png")) if images else []
    if frames and len(frames) != len(labels):
        raise ValueError(f"{seq}: {len(frames)} images/left/ev_inf frames but {len(labels)} labels")
    keep = np.arange(0, len(labels), label_every)
    windows, ev = iter(()), None
    if need_events and len(keep):
        ev = EventFile(seq)
        first_us = int(ts_us[keep[0]])
        if isinstance(spec.window, ByCount):
            # the window counts events that land on the sensor after rectification (as every
            # window here does); twice the count leaves room for those that fall off its border
            start = max(0, ev.index_at_us(first_us) - 2 * spec.window.events)
        else:
            start = ev.index_at_us(first_us - spec.window.window_ns // 1000 - 1)
        windows = spec.windows_at(ev.chunks(start), ts_us[keep] * 1000, height=LABEL_ROWS, width=SENSOR[1])
    try:
        for k in keep:
            label = classes.validate(read_png(labels[k], what="DSEC label"), str(labels[k]))
            if label.shape == SENSOR:
                label = label[:LABEL_ROWS]
            if label.shape != (LABEL_ROWS, SENSOR[1]):
                raise ValueError(f"{labels[k]}: a DSEC-Semantic label is 640 x 440, got {label.shape[1]} x {label.shape[0]}")
            events, n = None, None
            if need_events:
                _, events, n = next(windows)
            aps = read_png(frames[k], what="ev_inf frame")[:LABEL_ROWS] if frames else None
            yield Sample(f"{seq.name}_{k:06d}", int(ts_us[k]) * 1000, events, aps, label, n)
    finally:
        if ev is not None:
            ev.close()


def _ms_to_idx(t_us: np.ndarray) -> np.ndarray:
    """DSEC's definition: t[ms_to_idx[ms]] >= ms * 1000 > t[ms_to_idx[ms] - 1]."""
    last_ms = int(t_us[-1]) // 1000 + 1 if len(t_us) else 0
    return np.searchsorted(t_us, np.arange(last_ms + 1, dtype=np.int64) * 1000, side="left").astype(np.uint64)


def write_dsec_sequence(seq: str | os.PathLike, events: Events, timestamps_us: Sequence[int],
                        labels11: Sequence[np.ndarray] | None = None, labels19: Sequence[np.ndarray] | None = None,
                        rectify_map: np.ndarray | None = None, images: Sequence[np.ndarray] | None = None,
                        t_offset_us: int = 0) -> Path:
    """Write one sequence in the published layout (events in distorted sensor pixels with t in
    ns, absolute; labels 640 x 440; the identity map unless `rectify_map` is given)."""
    import hdf5plugin  # on use: only writing needs its filter objects

    h5py = _h5py()
    seq = Path(seq)
    (seq / "events" / "left").mkdir(parents=True, exist_ok=True)
    t_us = events.t // 1000 - int(t_offset_us)
    if len(t_us) and (t_us.min() < 0 or t_us.max() >= 2**32):
        raise ValueError("event times must lie within 2^32 µs after t_offset")
    blosc = hdf5plugin.Blosc(cname="zstd", clevel=1, shuffle=hdf5plugin.Blosc.SHUFFLE)
    with h5py.File(seq / "events" / "left" / "events.h5", "w") as f:
        for name, arr, dtype in (("x", events.x, np.uint16), ("y", events.y, np.uint16), ("t", t_us, np.uint32),
                                 ("p", (events.p > 0), np.uint8)):
            f.create_dataset(f"events/{name}", data=np.asarray(arr).astype(dtype), chunks=True if len(arr) else None,
                             **(blosc if len(arr) else {}))
        f.create_dataset("ms_to_idx", data=_ms_to_idx(t_us), **blosc)
        f.create_dataset("t_offset", data=np.int64(t_offset_us))
    if rectify_map is None:
        gy, gx = np.mgrid[0:SENSOR[0], 0:SENSOR[1]].astype(np.float32)
        rectify_map = np.stack([gx, gy], axis=-1)
    with h5py.File(seq / "events" / "left" / "rectify_map.h5", "w") as f:
        f.create_dataset("rectify_map", data=np.asarray(rectify_map, dtype=np.float32))
    (seq / "semantic").mkdir(parents=True, exist_ok=True)
    (seq / "semantic" / "timestamps.txt").write_text("".join(f"{int(t)}\n" for t in timestamps_us))
    for k, labels in ((11, labels11), (19, labels19)):
        for i, lab in enumerate(labels or ()):
            write_png(seq / "semantic" / "left" / f"{k}classes" / "data" / f"{i:06d}.png",
                      CLASS_SETS[k].validate(lab, f"label {i}"))
    for i, img in enumerate(images or ()):
        write_png(seq / "images" / "left" / "ev_inf" / f"{i:06d}.png", img)
    return seq


def convert_dsec(seq: str | os.PathLike, out: str | os.PathLike, *, classes: int = 11, topics=None,
                 period_ns: int | None = 33_333_333, max_events: int | None = None, progress: bool = True) -> dict:
    """One sequence -> a ROS1 bag (see the module doc); the frames and labels at each label time."""
    from tqdm import tqdm

    seq = Path(seq)
    if not is_sequence(seq):
        raise ValueError(f"{seq}: not a DSEC sequence (events/left/events.h5)")
    topics = topics or PRESETS["dsec"]
    # labels and frames stream beside the events: one still in memory at a time, not the sequence
    stills = _sequence_samples(seq, CLASS_SETS[classes], DEFAULT_EVENT_INPUT, 1, True, False)
    pending = next(stills, None)
    ev = EventFile(seq)
    written = {"frames": 0, "labels": 0}
    try:
        with BagWriter(out) as writer:

            def stills_until(stamp: int | None) -> None:
                """Write the stills stamped up to `stamp` (all of them for None), before its events."""
                nonlocal pending
                while pending is not None and (stamp is None or pending.t_ns <= stamp):
                    if pending.aps is not None:
                        writer.write_image(topics.image, pending.t_ns, pending.aps,
                                           "rgb8" if pending.aps.ndim == 3 else "mono8")
                        written["frames"] += 1
                    writer.write_image(topics.labels, pending.t_ns, pending.label, "mono8")
                    written["labels"] += 1
                    pending = next(stills, None)

            packer = EventPacker(writer, topics.events, LABEL_ROWS, SENSOR[1], period_ns=period_ns,
                                 max_events=max_events, before_message=stills_until)
            dropped = 0
            with tqdm(total=ev.n, unit="ev", unit_scale=True, disable=not progress, desc=f"{seq.name} events") as bar:
                for chunk in ev.chunks(0):
                    on = chunk.x < SENSOR[1]  # rectified onto the labelled area (the windows drop the rest)
                    dropped += int((~on).sum())
                    packer.add(chunk[on] if not on.all() else chunk)
                    bar.update(len(chunk))
            packer.flush()
            stills_until(None)
    finally:
        ev.close()
    return {"events": packer.events, "messages": packer.messages, "dropped_off_sensor": dropped, **written,
            "height": LABEL_ROWS, "width": SENSOR[1]}


def sequence_info(path: str | os.PathLike) -> dict:
    """Sequences of a DSEC root or one sequence: events, time span, labels, frames."""
    out = {}
    for seq in sequences(path, "all"):
        ev = EventFile(seq)
        try:
            t0 = int(ev.t[0]) + ev.t_offset_us if ev.n else None
            t1 = int(ev.t[-1]) + ev.t_offset_us if ev.n else None
        finally:
            ev.close()
        labels = {k: len(list(_label_dir(seq, k).glob("*.png"))) for k in CLASS_SETS
                  if any((seq / "semantic" / d / f"{k}classes").is_dir() for d in ("left", "."))}
        out[str(seq)] = {"events": ev.n, "t_start_us": t0, "duration_s": (t1 - t0) / 1e6 if ev.n else 0.0,
                         "labels": labels, "ev_inf_frames": len(list((seq / "images" / "left" / "ev_inf").glob("*.png")))}
    return out
