"""SlidingWindow and embeddings_at: against windows cut and embedded one by one, under any chunking."""
from __future__ import annotations

import numpy as np
import pytest

from evdistill_ros.events import Events, SlidingWindow, embed, embeddings_at

from conftest import random_events

H, W = 11, 14
MS = 1_000_000
REPS = [("count", {}), ("evdistill_2ch", {"quantize": True}), ("evsegnet_6ch", {}),
        ("voxel_grid", {"bins": 3}), ("time_surface", {"tau_ms": 20.0})]


def stream(n=30_000, duration_ns=1_200 * MS, seed=0, t0=1_700_000_000_003_000_000) -> Events:
    return random_events(n, height=H, width=W, seed=seed, t0=t0, duration_ns=duration_ns)


def bounds_params(name, t0, t1):
    return {"evsegnet_6ch": {"t_start": t0, "t_end": t1}, "time_surface": {"t_ref": t1}}.get(name, {})


def ref_time_windows(ev: Events, name, params, window, stride):
    """Windows cut by hand: ends on the k*stride grid, first full window, until the last event."""
    g0 = (int(ev.t[0]) // stride) * stride
    e = g0 + -(-window // stride) * stride
    out = []
    while e <= int(ev.t[-1]):
        sl = ev.time_slice(e - window, e)
        out.append((e - window, e, len(sl), embed(sl, name, height=H, width=W, **bounds_params(name, e - window, e), **params)))
        e += stride
    return out


def chunked(ev: Events, rng: np.random.Generator, max_chunk=5000):
    i = 0
    while i < len(ev):
        k = int(rng.choice([0, 1, 2, int(rng.integers(1, max_chunk))]))
        yield ev[i:i + k]
        i += k


def run(sw: SlidingWindow, chunks):
    out = []
    for c in chunks:
        out += sw.push(c)
    return out


def assert_windows_equal(got, want, name):
    assert [(w.t_start, w.t_end, w.num_events) for w in got] == [w[:3] for w in want]
    for w, r in zip(got, want):
        assert w.embedding.dtype == np.float32 and w.embedding.flags.c_contiguous
        if name == "evsegnet_6ch":  # float64 moment sums, updated vs recomputed
            np.testing.assert_allclose(w.embedding, r[3], rtol=1e-5, atol=2e-5)
        else:
            assert np.array_equal(w.embedding, r[3]), (name, w.t_end)


@pytest.mark.parametrize("name,params", REPS)
@pytest.mark.parametrize("window,stride", [(50 * MS, 10 * MS), (20 * MS, 35 * MS)])
def test_time_windows_match_reference_under_random_chunking(name, params, window, stride):
    ev = stream()
    want = ref_time_windows(ev, name, params, window, stride)
    assert len(want) > 20
    for seed in range(2):
        # seed 0 updates sums between windows where the representation allows, seed 1 recomputes each
        sw = SlidingWindow(name, height=H, width=W, window_ns=window, stride_ns=stride, max_empty_windows=None,
                           incremental=seed == 0, **params)
        got = run(sw, chunked(ev, np.random.default_rng(seed)))
        assert_windows_equal(got, want, name)
        assert [w.index for w in got] == list(range(len(got)))
        assert sw.stats.windows_emitted == len(got) and sw.stats.events_accepted == len(ev)


@pytest.mark.parametrize("name,params", REPS)
def test_chunkings_give_identical_windows(name, params):
    ev = stream(n=20_000, duration_ns=600 * MS, seed=4)
    runs = []
    for chunks in ([ev], [ev[i:i + 1] for i in range(0, 3000)] + [ev[3000:]], list(chunked(ev, np.random.default_rng(9), 300))):
        sw = SlidingWindow(name, height=H, width=W, window_ns=30 * MS, stride_ns=10 * MS, **params)
        runs.append(run(sw, chunks))
    for other in runs[1:]:
        assert_windows_equal(other, [(w.t_start, w.t_end, w.num_events, w.embedding) for w in runs[0]], name)


@pytest.mark.parametrize("name,params", REPS)
@pytest.mark.parametrize("window,stride", [(1000, 300), (500, 2000)])
def test_count_windows(name, params, window, stride):
    ev = stream(n=12_000, seed=2)
    want = []
    for end in range(window, len(ev) + 1, stride):
        sl = ev[end - window:end]
        t0, t1 = int(sl.t[0]), int(sl.t[-1]) + 1
        want.append((t0, t1, window, embed(sl, name, height=H, width=W, **bounds_params(name, t0, t1), **params)))
    sw = SlidingWindow(name, height=H, width=W, window_events=window, stride_events=stride, **params)
    assert_windows_equal(run(sw, chunked(ev, np.random.default_rng(1), 1500)), want, name)


def test_first_window_alignment_and_bounds():
    t0 = 1_000_000_007_000_000  # ns, 7 ms past a 10 ms grid point
    ev = Events([1, 2, 3, 4], [1, 1, 1, 1], [t0, t0 + 43 * MS - 1, t0 + 43 * MS, t0 + 80 * MS], [1, 1, 1, 1])
    sw = SlidingWindow("count", height=H, width=W, window_ns=50 * MS, stride_ns=10 * MS)
    ws = sw.push(ev)
    grid = t0 - 7 * MS
    assert [w.t_end for w in ws] == [grid + 50 * MS, grid + 60 * MS, grid + 70 * MS, grid + 80 * MS]
    # half-open: t0 + 43 ms - 1 is in the window ending at grid + 50 ms, t0 + 43 ms is not
    assert ws[0].t_start == grid and ws[0].num_events == 2
    assert [w.num_events for w in ws[1:]] == [2, 2, 2]  # the 1st event (grid + 7 ms) has left
    assert sw.advance(grid + 90 * MS)[0].num_events == 3  # the event at grid + 87 ms


def test_out_of_order_and_out_of_bounds_dropped_and_counted():
    ev = stream(n=8000, duration_ns=400 * MS)
    rng = np.random.default_rng(5)
    pos = np.sort(rng.choice(np.arange(100, len(ev)), 300, replace=False))
    late = Events(ev.x[pos], ev.y[pos], ev.t[pos] - rng.integers(1, 5 * MS, len(pos)), ev.p[pos])  # < reset threshold
    oob = Events(np.full(len(pos), W), np.zeros(len(pos)), ev.t[pos], np.ones(len(pos)))
    # interleave: each late / oob event goes right after the event it was derived from
    order = np.argsort(np.r_[np.arange(len(ev)), pos + 0.25, pos + 0.5], kind="stable")
    cat = Events.concatenate([ev, late, oob])[order]
    sw = SlidingWindow("count", height=H, width=W, window_ns=50 * MS, stride_ns=10 * MS)
    got = run(sw, chunked(cat, np.random.default_rng(2), 700))
    dropped = late.t < np.maximum.accumulate(ev.t)[pos]  # equal times are in order
    assert sw.stats.dropped_out_of_order == int(dropped.sum()) > 250
    assert sw.stats.dropped_out_of_bounds == len(pos)
    assert sw.stats.events_in == len(cat) and sw.stats.resets == 0
    kept = Events.concatenate([ev, late[~dropped]])
    kept = kept[np.argsort(kept.t, kind="stable")]
    assert_windows_equal(got, ref_time_windows(kept, "count", {}, 50 * MS, 10 * MS), "count")


def test_backwards_jump_resets():
    a = stream(n=5000, duration_ns=300 * MS, seed=1)
    b = stream(n=5000, duration_ns=300 * MS, seed=2, t0=int(a.t[0]) - 2_000 * MS)  # a looping bag
    calls = []
    sw = SlidingWindow("voxel_grid", height=H, width=W, window_ns=50 * MS, stride_ns=10 * MS,
                       on_reset=lambda old, new: calls.append((old, new)))
    got = run(sw, chunked(Events.concatenate([a, b]), np.random.default_rng(3), 900))
    assert sw.stats.resets == 1 and calls == [(int(a.t[-1]), int(b.t[0]))]
    na = len(ref_time_windows(a, "voxel_grid", {}, 50 * MS, 10 * MS))
    assert [w.reset for w in got] == [False] * na + [True] + [False] * (len(got) - na - 1)
    assert_windows_equal(got[na:], ref_time_windows(b, "voxel_grid", {}, 50 * MS, 10 * MS), "voxel_grid")
    # a jump under the threshold is just out-of-order drops
    sw = SlidingWindow("count", height=H, width=W, window_ns=50 * MS, reset_threshold_ns=5_000 * MS)
    run(sw, [a, b])
    assert sw.stats.resets == 0 and sw.stats.dropped_out_of_order == len(b) - int(np.sum(b.t >= a.t[-1]))


@pytest.mark.parametrize("cap", [None, 0, 3])
def test_gap_gives_empty_windows_up_to_cap(cap):
    a = stream(n=3000, duration_ns=100 * MS, seed=1)
    b = stream(n=3000, duration_ns=100 * MS, seed=2, t0=int(a.t[-1]) + 1_000 * MS)
    ev = Events.concatenate([a, b])
    want = ref_time_windows(ev, "count", {}, 20 * MS, 10 * MS)
    empty = [w for w in want if w[2] == 0]
    assert len(empty) > 90
    sw = SlidingWindow("count", height=H, width=W, window_ns=20 * MS, stride_ns=10 * MS, max_empty_windows=cap)
    got = run(sw, chunked(ev, np.random.default_rng(4), 800))
    n_empty = len(empty) if cap is None else cap
    assert sum(w.num_events == 0 for w in got) == n_empty
    assert all(not w.embedding.any() for w in got if w.num_events == 0)
    assert sw.stats.windows_skipped == len(empty) - n_empty
    first_empty_ends = {w[1] for w in empty[:n_empty]}
    assert_windows_equal(got, [w for w in want if w[2] > 0 or w[1] in first_empty_ends], "count")


def test_advance_emits_windows_without_events():
    ev = stream(n=2000, duration_ns=45 * MS)
    sw = SlidingWindow("count", height=H, width=W, window_ns=20 * MS, stride_ns=10 * MS, max_empty_windows=2)
    assert sw.push(ev) != []
    last = int(ev.t[-1])
    ws = sw.advance(last + 100 * MS)
    assert ws[0].num_events > 0 and sum(w.num_events == 0 for w in ws) == 2
    assert sw.push(Events([0], [0], [last + 50 * MS], [1])) == [] and sw.stats.dropped_out_of_order == 1


@pytest.mark.parametrize("name,params", [("count", {}), ("evsegnet_6ch", {}), ("voxel_grid", {})])
def test_overflow_keeps_newest_events(name, params):
    ev = stream(n=20_000, duration_ns=300 * MS, seed=8)
    cap = 1500
    sw = SlidingWindow(name, height=H, width=W, window_ns=50 * MS, stride_ns=10 * MS, max_events=cap, **params)
    got = run(sw, chunked(ev, np.random.default_rng(6), 4000))
    want = []
    for t0, t1, n, _ in ref_time_windows(ev, name, params, 50 * MS, 10 * MS):
        sl = ev.time_slice(t0, t1)[-cap:]
        want.append((t0, t1, len(sl), embed(sl, name, height=H, width=W, **bounds_params(name, t0, t1), **params)))
    assert_windows_equal(got, want, name)
    assert all(w.truncated for w in got)
    # every event either overflowed or sits in some window; the first window's start included
    assert sw.stats.dropped_overflow > 0


@pytest.mark.parametrize("name,params", REPS)
def test_embeddings_at_matches_reference(name, params):
    ev = stream(n=15_000, duration_ns=600 * MS, seed=3)
    rng = np.random.default_rng(0)
    ends = np.sort(np.r_[rng.integers(int(ev.t[0]) - 30 * MS, int(ev.t[-1]) + 30 * MS, 25), int(ev.t[100]), int(ev.t[100])])
    got = list(embeddings_at(chunked(ev, rng, 2000), ends, name, height=H, width=W, window_ns=40 * MS, **params))
    assert [g[0] for g in got] == ends.tolist()
    for e, emb, n in got:
        sl = ev.time_slice(e - 40 * MS, e)
        ref = embed(sl, name, height=H, width=W, **bounds_params(name, e - 40 * MS, e), **params)
        assert n == len(sl)
        np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=2e-5)
    got = list(embeddings_at(chunked(ev, rng, 2000), ends, name, height=H, width=W, window_events=700, **params))
    for e, emb, n in got:
        sl = ev[max(0, int(np.searchsorted(ev.t, e)) - 700):int(np.searchsorted(ev.t, e))]
        t0 = int(sl.t[0]) if len(sl) else e
        ref = embed(sl, name, height=H, width=W, **bounds_params(name, t0, e), **params)
        assert n == len(sl)
        np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=2e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        SlidingWindow("count", height=H, width=W)
    with pytest.raises(ValueError, match="exactly one"):
        SlidingWindow("count", height=H, width=W, window_ns=10, window_events=10)
    with pytest.raises(ValueError, match="unknown representation"):
        SlidingWindow("counts", height=H, width=W, window_ns=10)
    with pytest.raises(ValueError, match="no parameter"):
        SlidingWindow("count", height=H, width=W, window_ns=10, bins=2)
    with pytest.raises(ValueError, match="max_events"):
        SlidingWindow("count", height=H, width=W, window_events=10, max_events=5)
    with pytest.raises(ValueError, match="> 0"):
        SlidingWindow("count", height=H, width=W, window_ns=10, stride_ns=0)
    with pytest.raises(ValueError, match="non-decreasing"):
        list(embeddings_at([], [5, 3], "count", height=H, width=W, window_ns=10))
