"""Every representation against a plain numpy reference written here, on random and edge inputs."""
from __future__ import annotations

import numpy as np
import pytest

from evdistill_ros.events import REPRESENTATIONS, Events, embed, embed_and_count, representation_channels

from conftest import random_events

H, W = 13, 17


# ------------------------------------------------------------------ numpy references


def _inb(ev: Events, h: int, w: int) -> Events:
    return ev[(ev.x < w) & (ev.y < h)]


def ref_count(ev: Events, h: int, w: int) -> np.ndarray:
    ev = _inb(ev, h, w)
    out = np.zeros((2, h, w))
    np.add.at(out, (np.where(ev.p > 0, 0, 1), ev.y.astype(int), ev.x.astype(int)), 1)
    return out


def ref_evdistill(ev: Events, h: int, w: int, first: str = "positive", quantize: bool = False) -> np.ndarray:
    c = ref_count(ev, h, w)
    if first == "negative":
        c = c[::-1]
    out = np.zeros((3, h, w))
    for k in range(2):
        if c[k].max() > 0:
            out[k] = c[k] / c[k].max()
            if quantize:
                out[k] = np.round(out[k] * 255) / 255
    return out


def ref_evsegnet(ev: Events, h: int, w: int, t_start=None, t_end=None) -> np.ndarray:
    ev = _inb(ev, h, w)
    if t_start is None:
        t_start = int(ev.t[0]) if len(ev) else 0
    if t_end is None:
        t_end = int(ev.t[-1]) + 1 if len(ev) else t_start + 1
    tn = (ev.t - t_start).astype(np.float64) / (t_end - t_start)
    ch = np.where(ev.p > 0, 0, 1)  # ON first
    idx = (ch, ev.y.astype(int), ev.x.astype(int))
    n = np.zeros((2, h, w))
    s = np.zeros((2, h, w))
    np.add.at(n, idx, 1)
    np.add.at(s, idx, tn)
    mean = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
    sq = np.zeros((2, h, w))
    np.add.at(sq, idx, (tn - mean[idx]) ** 2)  # two-pass, unlike the kernel
    std = np.sqrt(np.divide(sq, n - 1, out=np.zeros_like(sq), where=n > 1))
    # Ev-SegNet's order: [n_on, n_off, mean_on, std_on, mean_off, std_off]
    return np.stack([n[0], n[1], mean[0], std[0], mean[1], std[1]])


def ref_voxel(ev: Events, h: int, w: int, bins: int = 5, separate_polarity: bool = False,
              normalize: bool = False) -> np.ndarray:
    ev = _inb(ev, h, w)
    out = np.zeros((2 * bins if separate_polarity else bins, h, w))
    if len(ev):
        t = (ev.t - ev.t[0]).astype(np.float64)  # relative first: float64 of 1.7e18 ns is 256 ns coarse
        dt = t[-1]
        # E2VID: deltaT 0 -> 1, so all in bin 0; out-of-order times are clamped into the grid
        ts = np.clip((bins - 1) * t / dt, 0, bins - 1) if dt > 0 else np.zeros(len(t))
        b = np.floor(ts).astype(int)
        f = ts - b
        if separate_polarity:
            v = np.ones(len(ev))
            b = b + np.where(ev.p > 0, 0, bins)
        else:
            v = np.where(ev.p > 0, 1.0, -1.0)
        y, x = ev.y.astype(int), ev.x.astype(int)
        np.add.at(out, (b, y, x), v * (1 - f))
        m = (ts.astype(int) + 1) < bins
        np.add.at(out, (b[m] + 1, y[m], x[m]), v[m] * f[m])
    if normalize:
        nz = out != 0
        if nz.any():
            mean = out[nz].mean()
            std = np.sqrt((out[nz] ** 2).mean() - mean ** 2)
            out = nz * (out - mean) / (std if std > 0 else 1.0)  # E2VID would give NaN; we centre only
    return out


def ref_time_surface(ev: Events, h: int, w: int, tau_ms: float = 50.0, t_ref=None) -> np.ndarray:
    ev = _inb(ev, h, w)
    last = np.full((2, h, w), -1, np.int64)
    np.maximum.at(last, (np.where(ev.p > 0, 0, 1), ev.y.astype(int), ev.x.astype(int)), ev.t - (ev.t.min() if len(ev) else 0))
    if t_ref is None:
        t_ref = int(ev.t.max()) if len(ev) else 0
    t_abs = last + (ev.t.min() if len(ev) else 0)
    return np.where(last >= 0, np.exp(-(t_ref - t_abs) / (tau_ms * 1e6)), 0.0)


REFS = {"count": ref_count, "evdistill_2ch": ref_evdistill, "evsegnet_6ch": ref_evsegnet,
        "voxel_grid": ref_voxel, "time_surface": ref_time_surface}

CASES = [  # (name, params)
    ("count", {}),
    ("evdistill_2ch", {}),
    ("evdistill_2ch", {"first": "negative"}),
    ("evdistill_2ch", {"quantize": True}),
    ("evsegnet_6ch", {}),
    ("voxel_grid", {}),
    ("voxel_grid", {"bins": 3, "separate_polarity": True}),
    ("voxel_grid", {"bins": 1}),
    ("voxel_grid", {"bins": 4, "normalize": True}),
    ("time_surface", {}),
    ("time_surface", {"tau_ms": 3.0}),
]


def check(ev: Events, name: str, params: dict, h: int = H, w: int = W) -> np.ndarray:
    out, skipped = embed_and_count(ev, name, height=h, width=w, **params)
    ref = REFS[name](ev, h, w, **params)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert out.shape == (representation_channels(name, **params), h, w) == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5, err_msg=f"{name} {params}")
    assert skipped == int(np.sum((ev.x >= w) | (ev.y >= h)))
    return out


def test_registry_complete():
    assert set(REPRESENTATIONS) == set(REFS)


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("signed", [False, True])
def test_random_matches_reference(name, params, signed):
    ev = random_events(3000, height=H, width=W, seed=7, signed=signed)
    out = check(ev, name, params)
    assert np.abs(out).sum() > 0


@pytest.mark.parametrize("name,params", CASES)
def test_edge_cases(name, params):
    t0 = 1_700_000_000_000_000_000
    # empty -> zeros
    out = check(Events.empty(), name, params)
    assert not out.any()
    # one event at the far corner
    check(Events([W - 1], [H - 1], [t0], [1]), name, params)
    check(Events([0], [0], [t0], [-1]), name, params)
    # everything on one pixel, equal timestamps, both polarities
    n = 50
    check(Events(np.full(n, 3), np.full(n, 4), np.full(n, t0), np.arange(n) % 2), name, params)
    # all four corners and border rows/columns, close timestamps
    xs = np.array([0, W - 1, 0, W - 1, 5, 5, 0, W - 1])
    ys = np.array([0, 0, H - 1, H - 1, 0, H - 1, 6, 6])
    check(Events(xs, ys, t0 + np.arange(8) * 3, [1, 0, 1, 0, 1, 1, 0, 0]), name, params)


@pytest.mark.parametrize("name,params", CASES)
def test_out_of_range_ignored_and_counted(name, params):
    ev = random_events(500, height=H + 3, width=W + 3, seed=3)
    ev = Events(np.r_[ev.x, 65535, W, 0], np.r_[ev.y, 0, 0, H], np.r_[ev.t, ev.t[-1] + np.arange(1, 4)], np.r_[ev.p, 1, 1, 0])
    out, skipped = embed_and_count(ev, name, height=H, width=W, **params)
    assert skipped == int(np.sum((ev.x >= W) | (ev.y >= H))) > 3
    # ignored means "as if absent", including for the time range of voxel grids and surfaces
    np.testing.assert_allclose(out, embed(_inb(ev, H, W), name, height=H, width=W, **params), rtol=1e-6, atol=1e-6)
    check(ev, name, params)


@pytest.mark.parametrize("params", [{}, {"bins": 3, "separate_polarity": True}])
def test_voxel_packed_sums_on_a_hot_pixel_and_in_chunks(params, monkeypatch):
    # the kernel packs sum(v) and sum(v * frac) into one float64 per cell: 200k events of
    # both polarities on one pixel stress the packing, and a tiny chunk limit the chunking
    rng = np.random.default_rng(2)
    n = 200_000
    t = 1_700_000_000_000_000_000 + np.sort(rng.integers(0, 50_000_000, n))
    hot = Events(np.r_[np.full(n, 4), rng.integers(0, W, 99)], np.r_[np.full(n, 2), rng.integers(0, H, 99)],
                 np.r_[t, rng.integers(t[0], t[-1], 99)], rng.integers(0, 2, n + 99))
    check(hot[np.argsort(hot.t, kind="stable")], "voxel_grid", params)
    from evdistill_ros.events import kernels
    monkeypatch.setattr(kernels, "VOXEL_MAX_EVENTS", 7)
    check(random_events(300, height=H + 2, width=W, seed=4), "voxel_grid", params)


@pytest.mark.parametrize("params", [{}, {"bins": 3, "separate_polarity": True}, {"bins": 1}])
def test_voxel_unsorted_times_match_reference(params):
    # the fast kernel takes the events of each bin as one run of a time-sorted input; on
    # any other order it must notice and the general kernel must give the clamped result
    ev = random_events(2000, height=H + 1, width=W, seed=5)
    rng = np.random.default_rng(0)
    check(ev[rng.permutation(len(ev))], "voxel_grid", params)  # fully shuffled
    inner = np.r_[0, 1 + rng.permutation(len(ev) - 2), len(ev) - 1]
    check(ev[inner], "voxel_grid", params)  # shuffled between the same first and last event
    early = Events(ev.x, ev.y, ev.t.copy(), ev.p)
    early.t[1000] = ev.t[0] - 5_000_000  # before the first event: clamped into bin 0
    check(early, "voxel_grid", params)
    late = Events(ev.x, ev.y, ev.t.copy(), ev.p)
    # after the last in-bounds event, among the last bin's run: clamped into the last bin
    late.t[np.flatnonzero(ev.y < H)[-2]] = ev.t[-1] + 5_000_000
    check(late, "voxel_grid", params)


def test_voxel_fast_kernel_takes_sorted_runs_and_refuses_the_rest():
    from evdistill_ros.events import kernels
    ev = random_events(5000, height=H, width=W + 2, seed=6)
    t0, t1, bins = int(ev.t[0]), int(ev.t[-1]), 5
    scale = (bins - 1) / (t1 - t0)
    args = (ev.x, ev.y, ev.t, ev.p, H, W, bins, t0, scale)
    weight = np.array([-1.0, 1.0])
    starts = kernels.voxel_bin_starts(ev.t, t0, scale, bins)
    ts = (ev.t - t0).astype(np.float64) * scale
    assert np.array_equal(starts, [np.sum(ts < b) for b in range(bins)] + [len(ev)])
    fast, general = np.zeros(bins * H * W), np.zeros(bins * H * W)
    skipped = kernels.add_voxel_binned(*args, float(t1 - t0) * scale, weight, fast)
    assert skipped == kernels.add_voxel(*args, weight, general) == int(np.sum(ev.x >= W)) > 0
    np.testing.assert_allclose(fast, general, rtol=1e-15)
    swapped = Events(ev.x, ev.y, ev.t.copy(), ev.p)
    swapped.t[[100, 4000]] = swapped.t[[4000, 100]]  # two events in each other's bins
    assert kernels.add_voxel_binned(swapped.x, swapped.y, swapped.t, swapped.p, H, W, bins, t0, scale,
                                    float(t1 - t0) * scale, weight, np.zeros(bins * H * W)) == -1


def test_voxel_grids_from_threads_equal_serial_ones():
    # the accumulator is reused per thread: concurrent calls (nodes, loader threads) and
    # alternating sizes must not see each other's sums
    from concurrent.futures import ThreadPoolExecutor
    jobs = [(random_events(20_000, height=H, width=W, seed=s), {"bins": 2 + s % 4, "separate_polarity": s % 2 == 1})
            for s in range(8)]
    serial = [embed(ev, "voxel_grid", height=H, width=W, **params) for ev, params in jobs]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            threaded = list(pool.map(lambda job: embed(job[0], "voxel_grid", height=H, width=W, **job[1]), jobs))
            for a, b in zip(serial, threaded):
                assert np.array_equal(a, b)


def test_polarity_conventions_agree():
    ev = random_events(2000, height=H, width=W, seed=11)
    signed = Events(ev.x, ev.y, ev.t, np.where(ev.p > 0, 1, -1))
    for name, params in CASES:
        assert np.array_equal(embed(ev, name, height=H, width=W, **params),
                              embed(signed, name, height=H, width=W, **params)), name


def test_known_values():
    t0 = 10_000_000_000
    ev = Events([1, 1, 1, 2], [0, 0, 0, 1], [t0, t0 + 10, t0 + 20, t0 + 40], [1, 1, 0, -1])
    c = embed(ev, "count", height=2, width=3)
    assert c[0, 0, 1] == 2 and c[1, 0, 1] == 1 and c[1, 1, 2] == 1 and c.sum() == 4
    v = embed(ev, "voxel_grid", height=2, width=3, bins=5)
    # ts = 4 * (0, 10, 20, 40) / 40 = 0, 1, 2, 4 -> whole weights on bins 0, 1, 2, 4
    assert v[0, 0, 1] == 1 and v[1, 0, 1] == 1 and v[2, 0, 1] == -1 and v[4, 1, 2] == -1 and np.abs(v).sum() == 4
    e = embed(ev, "evdistill_2ch", height=2, width=3)
    assert e[0, 0, 1] == 1.0 and e[1, 0, 1] == 1.0 and e[1, 1, 2] == 1.0 and not e[2].any()
    s = embed(ev, "evsegnet_6ch", height=2, width=3, t_start=t0, t_end=t0 + 100)
    # [n_on, n_off, mean_on, std_on, mean_off, std_off] (Ev-SegNet's show_events.py order)
    assert s[0, 0, 1] == 2 and s[2, 0, 1] == pytest.approx(0.05) and s[3, 0, 1] == pytest.approx(np.std([0, .1], ddof=1))
    assert s[1, 0, 1] == 1 and s[4, 0, 1] == pytest.approx(0.2) and s[5, 0, 1] == 0
    assert s[1, 1, 2] == 1 and s[4, 1, 2] == pytest.approx(0.4) and s[0, 1, 2] == 0 and s[2, 1, 2] == 0
    ts = embed(ev, "time_surface", height=2, width=3, tau_ms=1e-5, t_ref=t0 + 40)  # tau = 10 ns
    assert ts[1, 1, 2] == 1.0 and ts[0, 0, 1] == pytest.approx(np.exp(-3)) and ts[1, 0, 1] == pytest.approx(np.exp(-2))


def test_quantize_is_png_roundtrip():
    ev = random_events(5000, height=H, width=W, seed=5)
    q = embed(ev, "evdistill_2ch", height=H, width=W, quantize=True)
    png = np.rint(q * 255)
    np.testing.assert_allclose(q * 255, png, atol=1e-4)  # exactly k/255 values
    assert png.max() == 255


def test_bad_input_messages():
    ev = random_events(10, height=H, width=W)
    with pytest.raises(ValueError, match="unknown representation 'nope'"):
        embed(ev, "nope", height=H, width=W)
    with pytest.raises(ValueError, match="no parameter"):
        embed(ev, "count", height=H, width=W, bins=3)
    with pytest.raises(ValueError, match="bins"):
        embed(ev, "voxel_grid", height=H, width=W, bins=0)
    with pytest.raises(ValueError, match="sensor size"):
        embed(ev, "count", height=0, width=W)
    with pytest.raises(ValueError, match="first"):
        embed(ev, "evdistill_2ch", height=H, width=W, first="red")
    with pytest.raises(ValueError, match="t_ref"):
        embed(ev, "time_surface", height=H, width=W, t_ref=int(ev.t[0]) - 1)
    with pytest.raises(ValueError, match="tau_ms"):
        embed(ev, "time_surface", height=H, width=W, tau_ms=0)
    with pytest.raises(TypeError, match="Events"):
        embed(np.zeros((10, 4)), "count", height=H, width=W)
