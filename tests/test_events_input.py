"""EventInput: the one typed event input, its checkpoint form, and the layering of user settings."""
from __future__ import annotations

import numpy as np
import pytest

from evdistill_ros.events import DEFAULT_EVENT_INPUT, ByCount, ByTime, EventInput, Events, embed
from evdistill_ros.models import authors_metadata


def test_default_is_evdistill_2ch_over_50ms_and_round_trips():
    assert DEFAULT_EVENT_INPUT.representation == "evdistill_2ch"
    assert DEFAULT_EVENT_INPUT.window == ByTime(50_000_000)
    d = DEFAULT_EVENT_INPUT.to_dict()
    assert d == {"name": "evdistill_2ch", "params": {}, "window_ns": 50_000_000, "window_events": None}
    assert EventInput.from_dict(d) == DEFAULT_EVENT_INPUT
    assert authors_metadata("events")["representation"] == d


@pytest.mark.parametrize("spec", [
    EventInput("voxel_grid", {"bins": 5}, ByTime(30_000_000, 10_000_000), "/dvs/events"),
    EventInput("count", {}, ByCount(20_000, 5_000)),
    EventInput("time_surface", {"tau_ms": 20.0}, ByCount(1000)),
])
def test_checkpoint_form_round_trips(spec):
    assert EventInput.from_dict(spec.to_dict()) == spec


def test_old_checkpoint_dicts_still_read():
    old = {"name": "voxel_grid", "params": {"bins": 3}}  # no window keys (first checkpoints)
    assert EventInput.from_dict(old).window == DEFAULT_EVENT_INPUT.window
    old2 = {"name": "count", "params": {}, "window_ns": None, "window_events": 5000, "events_topic": "/e"}
    assert EventInput.from_dict(old2) == EventInput("count", {}, ByCount(5000), "/e")
    with pytest.raises(ValueError, match="representation 'name'"):
        EventInput.from_dict("aps")


@pytest.mark.parametrize("make", [lambda: ByTime(0), lambda: ByCount(-3), lambda: ByTime(True),
                                  lambda: EventInput(window=50), lambda: EventInput(""),
                                  lambda: EventInput(params=[1])])
def test_invalid_inputs_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_frozen_and_params_copied():
    params = {"bins": 3}
    spec = EventInput("voxel_grid", params)
    params["bins"] = 9
    assert spec.params == {"bins": 3}
    with pytest.raises(AttributeError):
        spec.representation = "count"


def test_overrides_layer_like_ros_parameters():
    base = EventInput("voxel_grid", {"bins": 5}, ByTime(50_000_000), "/t")
    assert base.with_overrides() == base  # all defaults: nothing changes
    assert base.with_overrides(params={"bins": 3}).params == {"bins": 3}
    assert base.with_overrides(window_ms=20).window == ByTime(20_000_000)
    assert base.with_overrides(stride_ms=10).window == ByTime(50_000_000, 10_000_000)
    assert base.with_overrides(window_events=1000, window_ms=20).window == ByCount(1000)  # count wins
    # a count stride never lands on a time window, nor a time stride on a count window
    assert base.with_overrides(stride_events=10).window == ByTime(50_000_000)
    assert EventInput("count", {}, ByCount(100)).with_overrides(stride_ms=5).window == ByCount(100)
    # another representation starts from its own (empty) params
    assert base.with_overrides(representation="count").params == {}
    assert base.with_overrides(representation="count").topic == "/t"


def test_same_embedding_ignores_topic_and_stride_only():
    a = EventInput("voxel_grid", {"bins": 5}, ByTime(50_000_000), "/a")
    assert a.same_embedding(EventInput("voxel_grid", {"bins": 5}, ByTime(50_000_000, 10_000_000), "/b"))
    assert not a.same_embedding(EventInput("voxel_grid", {"bins": 3}, ByTime(50_000_000)))
    assert not a.same_embedding(EventInput("voxel_grid", {"bins": 5}, ByTime(40_000_000)))
    assert not a.same_embedding(EventInput("count", {}, ByTime(50_000_000)))


def test_windows_at_and_make_window_embed_the_window():
    rng = np.random.default_rng(0)
    n = 5000
    t = np.sort(rng.integers(0, 200_000_000, n))
    ev = Events(rng.integers(0, 40, n), rng.integers(0, 30, n), t, rng.integers(0, 2, n))
    spec = EventInput("count", {}, ByTime(50_000_000))
    ends = np.array([60_000_000, 150_000_000])
    out = list(spec.windows_at([ev], ends, height=30, width=40))
    for (t_end, emb, n_ev), e in zip(out, ends):
        ref = embed(ev.time_slice(e - 50_000_000, e), "count", height=30, width=40)
        np.testing.assert_array_equal(emb, ref)
    sw = EventInput("count", {}, ByCount(1000)).make_window(30, 40)
    windows = sw.push(ev)
    assert windows and all(w.num_events == 1000 for w in windows)
    assert spec.channels == 2 and "50 ms" in spec.describe()
    with pytest.raises(ValueError, match="no parameter"):
        EventInput("count", {"bins": 3}).check()


def test_shipped_configs_give_valid_event_inputs():
    """config/ddd17.yaml and mvsec.yaml set evdistill_2ch with params {}: a dict merge over the
    defaults used to hand them voxel_grid's 'bins', which failed only at extraction."""
    from pathlib import Path

    from evdistill_ros.distill.config import load_config

    for name in ("ddd17", "mvsec", "demo", "dsec"):
        cfg = load_config(Path(__file__).resolve().parents[1] / "config" / f"{name}.yaml")
        spec = cfg.data.event_input.check()
        if spec.representation == "evdistill_2ch":
            assert spec.params == {}


def test_same_embedding_fills_registry_defaults():
    assert EventInput("voxel_grid", {}).same_embedding(EventInput("voxel_grid", {"bins": 5}))
    assert not EventInput("voxel_grid", {}).same_embedding(EventInput("voxel_grid", {"bins": 3}))
