"""DDD17 / DDD20 original recordings (cAER packets in HDF5) -> ROS1 bag, streaming.

Layout of a recording (`rec<unix time>.hdf5`, written by ddd20-utils' record.py):

    dvs/data        (R, 3) variable-length uint8 rows: [system time, packet header, packet body]
                    system time: ASCII digits of the host's receive time in µs (empty in the
                    unused rows at the end, the file grows in blocks of 2048 rows);
                    header: 28 bytes '<hhiiiiii' = type, source, size, offset (tsOffset),
                    overflow (tsOverflow), capacity, number, valid;
                    body: capacity * size bytes of events of that type.
    dvs/timestamp   (R,) int: the system time again
    <signal>/data   (M, 2) float64 [time µs, value] (vehicle signals: steering_wheel_angle, ...)

Packet types: 0 special, 1 polarity, 2 frame, 3 IMU6. A polarity event is two uint32
(data, timestamp µs): valid = data & 1, polarity = (data >> 1) & 1, y = (data >> 2) & 0x7FFF,
x = data >> 17. A frame event is a 36-byte header of nine int32 (info, ts_startframe,
ts_endframe, ts_startexposure, ts_endexposure, lengthX, lengthY, positionX, positionY) and
lengthY x lengthX uint16 pixels. Timestamps are 31-bit and widened with the packet's
overflow counter: t_µs = overflow << 31 | ts. Frames are stamped at ts_endframe (as the
ddd20 viewer does). Invalid events (valid bit 0) and frames are skipped.

API:
    iter_ddd17_packets(path, chunk_rows=512) -> Iterator[Packet]   decoded, in file order
    convert_ddd17(src, dst, *, topics=PRESETS["ddd17"], mono8=False, time_origin="wall",
                  period_ns=33_333_333, max_events=None, progress=True) -> dict of counts

time_origin: "wall" shifts sensor time so that the first polarity or frame packet's first
timestamp sits at that packet's host receive time (bags then carry plausible epoch times); "sensor" keeps
the camera's clock (µs since it started), which is what DDD17-derived datasets index.
Polarity packets decode with numpy over all packets of a chunk of rows at once; there is
no per-event Python.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import frames
from ..events.types import Events
from .bag_writer import BagWriter
from .packing import EventPacker
from .presets import PRESETS, TopicPreset

HEADER = struct.Struct("<hhiiiiii")
POLARITY, FRAME, SPECIAL, IMU6 = 1, 2, 0, 3
FRAME_HEADER_BYTES = 36
DAVIS346 = (260, 346)


@dataclass(frozen=True)
class Packet:
    """One decoded cAER packet: events (polarity), frames (frame) or nothing (other types)."""

    etype: int
    sys_ts_us: int
    events: Events | None = None  # t in ns of sensor time
    frames: tuple[tuple[int, np.ndarray], ...] = ()  # (t ns sensor time, (H, W) uint16)


def decode_polarity(body: np.ndarray, esize: int, overflow: int) -> Events:
    """Polarity events of one packet body (uint8 bytes) -> Events with sensor time in ns."""
    if esize < 8 or esize % 4:
        raise ValueError(f"DDD17 polarity packet with event size {esize}, expected 8")
    n = len(body) // esize
    words = np.frombuffer(body, dtype="<u4", count=n * esize // 4).reshape(n, esize // 4)
    return _polarity_from_words(words[:, 0], words[:, 1], np.full(n, overflow, np.int64))


def _polarity_from_words(data: np.ndarray, ts: np.ndarray, overflow: np.ndarray) -> Events:
    valid = (data & 1).astype(bool)
    data, ts, overflow = data[valid], ts[valid], overflow[valid]
    t_us = (overflow << 31) | (ts.astype(np.int64) & 0x7FFFFFFF)
    return Events((data >> 17).astype(np.uint16), ((data >> 2) & 0x7FFF).astype(np.uint16),
                  t_us * 1000, ((data >> 1) & 1).astype(np.int8))


def decode_frames(body: np.ndarray, esize: int, overflow: int, where: str = "") -> list[tuple[int, np.ndarray]]:
    """Frames of one frame packet body -> [(t ns at end of frame, (H, W) uint16)], valid ones only."""
    out = []
    for off in range(0, len(body) - esize + 1, esize):
        head = np.frombuffer(body, dtype="<i4", count=9, offset=off)
        info, ts_end, lx, ly = int(head[0]), int(head[2]), int(head[5]), int(head[6])
        if not info & 1:
            continue
        channels = max(1, (info >> 1) & 0x7)
        npix = lx * ly * channels
        if lx <= 0 or ly <= 0 or FRAME_HEADER_BYTES + 2 * npix > esize:
            raise ValueError(f"DDD17 frame{where}: {lx}x{ly}x{channels} pixels do not fit an event of {esize} bytes")
        pix = np.frombuffer(body, dtype="<u2", count=npix, offset=off + FRAME_HEADER_BYTES)
        img = pix.reshape(ly, lx) if channels == 1 else pix.reshape(ly, lx, channels)[..., 0]
        out.append((((overflow << 31) | (ts_end & 0x7FFFFFFF)) * 1000, img.astype(np.uint16)))
    return out


def _open(path: str | os.PathLike):
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such DDD17 file: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not an HDF5 file ({exc})") from exc
    if "dvs" not in f or "data" not in f["dvs"]:
        f.close()
        raise ValueError(f"{path}: not a DDD17 recording (no dvs/data; *_export.hdf5 files are not supported)")
    ds = f["dvs/data"]
    if ds.ndim != 2 or ds.shape[1] != 3:
        f.close()
        raise ValueError(f"{path}: dvs/data has shape {ds.shape}, expected (rows, 3) [time, header, body]")
    return f, ds


def iter_ddd17_packets(path: str | os.PathLike, chunk_rows: int = 512, progress=None) -> Iterator[Packet]:
    """Decoded packets of a recording in file order; padding rows are skipped.

    `progress`, if given, is called with the number of rows consumed after each chunk.
    """
    f, ds = _open(path)
    with f:
        for r0 in range(0, ds.shape[0], chunk_rows):
            rows = ds[r0 : r0 + chunk_rows]
            for i, row in enumerate(rows):
                sys_raw = np.asarray(row[0], np.uint8).tobytes()
                if not sys_raw:
                    continue  # unused row of a pre-allocated block
                head = np.asarray(row[1], np.uint8).tobytes()
                where = f" in {path} row {r0 + i}"
                if len(head) != HEADER.size:
                    raise ValueError(f"DDD17 packet header of {len(head)} bytes{where}, expected {HEADER.size}")
                try:
                    sys_ts = int(sys_raw.decode("ascii"))
                except (UnicodeDecodeError, ValueError):
                    raise ValueError(f"DDD17 system time {sys_raw[:20]!r}{where} is not a decimal number") from None
                etype, _src, esize, _off, overflow, capacity, _number, _valid = HEADER.unpack(head)
                body = np.asarray(row[2], np.uint8)
                if esize <= 0 or len(body) < capacity * esize:
                    raise ValueError(f"DDD17 packet{where}: body of {len(body)} bytes < capacity {capacity} x size {esize}")
                body = body[: capacity * esize]
                if etype == POLARITY:
                    yield Packet(etype, sys_ts, events=decode_polarity(body, esize, overflow))
                elif etype == FRAME:
                    yield Packet(etype, sys_ts, frames=tuple(decode_frames(body, esize, overflow, where)))
                else:
                    yield Packet(etype, sys_ts)
            if progress is not None:
                progress(len(rows))


def convert_ddd17(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    topics: TopicPreset = PRESETS["ddd17"],
    mono8: bool = False,
    time_origin: str = "wall",
    period_ns: int | None = 33_333_333,
    max_events: int | None = None,
    progress: bool = True,
) -> dict:
    """Convert a DDD17 recording to a bag: events (EventArray), frames (mono16 or mono8)."""
    from tqdm import tqdm

    if time_origin not in ("wall", "sensor"):
        raise ValueError(f"time_origin must be 'wall' or 'sensor', got {time_origin!r}")
    f, ds = _open(src)
    total_rows = int(ds.shape[0])
    f.close()
    pending: list[tuple[int, np.ndarray]] = []
    counts = {"events": 0, "messages": 0, "frames": 0, "dropped_out_of_order": 0, "dropped_out_of_bounds": 0}
    offset_ns: int | None = 0 if time_origin == "sensor" else None
    height, width = DAVIS346
    with BagWriter(dst) as writer, tqdm(total=total_rows, unit="pkt", disable=not progress, desc="ddd17") as bar:

        def frames_until(stamp: int | None) -> None:
            # frames arrive in their own packets; write those not later than the next event message
            while pending and (stamp is None or pending[0][0] <= stamp):
                t, img = pending.pop(0)
                writer.write_image(topics.image, t, frames.to_u8(img) if mono8 else img,
                                   "mono8" if mono8 else "mono16")
                counts["frames"] += 1

        packer = EventPacker(writer, topics.events, height, width, period_ns=period_ns, max_events=max_events,
                             on_backwards="drop", before_message=frames_until)
        for pkt in iter_ddd17_packets(src, progress=bar.update):
            if pkt.events is not None and len(pkt.events):
                ev = pkt.events
                if offset_ns is None:
                    offset_ns = pkt.sys_ts_us * 1000 - int(ev.t[0])
                inside = ev.in_bounds(height, width)
                if not inside.all():
                    counts["dropped_out_of_bounds"] += int(len(ev) - np.count_nonzero(inside))
                    ev = ev[inside]
                packer.add(Events(ev.x, ev.y, ev.t + offset_ns, ev.p))
            for t, img in pkt.frames:
                if offset_ns is None:
                    offset_ns = pkt.sys_ts_us * 1000 - t
                pending.append((t + offset_ns, img))
                pending.sort(key=lambda item: item[0])
        packer.flush()
        frames_until(None)
    counts.update(events=packer.events, messages=packer.messages, dropped_out_of_order=packer.dropped)
    return counts
