"""Dataset conversion and decoding throughput, against plain-Python references in the same run.

    python bench/bench_datasets.py [--quick]

Rows: EventPacket 'mono' decode (numpy vs a struct loop), EventPacket 'evt3' decode (numba vs
a per-word Python decoder), MVSEC HDF5 -> bag conversion end to end (h5py read, packing,
EventArray encode, bag write) against h5py reading alone (the floor). Figures are Mev/s,
best of 3; the machine is shared, take them as rough.
"""
from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evdistill_ros.events import Events  # noqa: E402
from evdistill_ros.wire.event_camera_msgs import Evt3Decoder, decode_mono  # noqa: E402


def best(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def evt3_words(n, rng):
    words = []
    t = 0
    for i in range(n):
        if i % 64 == 0:
            t += 37
            words += [0x8000 | ((t >> 12) & 0xFFF), 0x6000 | (t & 0xFFF), int(rng.integers(0, 260))]
        words.append(0x2000 | (int(rng.integers(0, 2)) << 11) | int(rng.integers(0, 346)))
    return np.array(words, np.uint16)


def py_evt3(words):
    out, high, low, y = [], 0, 0, 0
    for w in words.tolist():
        c = w >> 12
        if c == 8:
            high = (w & 0xFFF) << 12
        elif c == 6:
            low = w & 0xFFF
        elif c == 0:
            y = w & 0x7FF
        elif c == 2:
            out.append((w & 0x7FF, y, (high | low) * 1000, (w >> 11) & 1))
    return out


def py_mono(raw):
    return [((w >> 32) & 0xFFFF, (w >> 48) & 0x7FFF, w & 0xFFFFFFFF, w >> 63) for (w,) in struct.iter_unpack("<Q", raw)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n_dec, n_py, n_conv = (50_000, 20_000, 200_000) if args.quick else (2_000_000, 200_000, 4_000_000)
    rows = []

    raw = rng.integers(0, 2**63, n_dec, dtype=np.uint64).astype("<u8").tobytes()
    t_np = best(lambda: decode_mono(np.frombuffer(raw, np.uint8), 0, 0, 0))
    raw_py = raw[: 8 * n_py]
    t_py = best(lambda: py_mono(raw_py), 1)
    rows.append(("EventPacket mono decode", n_dec / t_np / 1e6, n_py / t_py / 1e6))

    words = evt3_words(n_dec, rng)
    dec = Evt3Decoder()
    dec(words[:100], 346, 260)  # compile / load the numba cache outside the timing
    t_nb = best(lambda: Evt3Decoder()(words, 346, 260))
    words_py = evt3_words(n_py, rng)
    t_py = best(lambda: py_evt3(words_py), 1)
    rows.append(("EventPacket evt3 decode", n_dec / t_nb / 1e6, n_py / t_py / 1e6))

    import h5py

    from evdistill_ros.io.mvsec import convert_mvsec, ns_to_seconds

    with tempfile.TemporaryDirectory() as d:
        h5 = Path(d) / "m.hdf5"
        t = np.sort(rng.integers(1_500_000_000_000_000, 1_500_000_010_000_000, n_conv)) * 1000
        ev = Events(rng.integers(0, 346, n_conv), rng.integers(0, 260, n_conv), t, rng.integers(0, 2, n_conv))
        with h5py.File(h5, "w") as f:
            f.create_dataset("davis/left/events", data=np.stack(
                [ev.x.astype(float), ev.y.astype(float), ns_to_seconds(ev.t), np.where(ev.p > 0, 1.0, -1.0)], 1),
                chunks=(65536, 4))
        t_conv = best(lambda: convert_mvsec(h5, Path(d) / "o.bag", progress=False), 1 if not args.quick else 3)

        def read_only():
            with h5py.File(h5, "r") as f:
                ds = f["davis/left/events"]
                for i in range(0, n_conv, 1_000_000):
                    ds[i:i + 1_000_000]

        t_read = best(read_only)
        rows.append(("MVSEC hdf5 -> bag (vs h5py read only)", n_conv / t_conv / 1e6, n_conv / t_read / 1e6))

    print(f"{'task':42s} {'ours Mev/s':>11s} {'reference Mev/s':>16s} {'ratio':>7s}")
    for name, ours, ref in rows:
        print(f"{name:42s} {ours:11.2f} {ref:16.2f} {ours / ref:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
