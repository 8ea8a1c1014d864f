"""Config loading and validation, joint augmentation, the resumable sampler."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from evdistill_ros.distill import config as C
from evdistill_ros.distill.augment import augment_pair
from evdistill_ros.distill.commands import _seeds_arg
from evdistill_ros.distill.compare import _seeds
from evdistill_ros.distill.dataset import ResumableSampler

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo", "ddd17", "mvsec", "dsec", "davis"])
def test_shipped_configs_load(name):
    cfg = C.load_config(REPO / "config" / f"{name}.yaml")
    assert cfg.student.method in C.METHODS
    w = cfg.student.weights
    assert (w["ce"], w["recon"], w["pixel"], w["affinity"]) == (10.0, 10.0, 20.0, 0.1)


def test_unknown_keys_and_bad_values_raise(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ValueError, match="train.lrr"):
        C.load_config(bad)
    with pytest.raises(ValueError, match="student.method"):
        C.load_config(None, [{"student": {"method": "magic"}}])
    with pytest.raises(ValueError, match="weights.foo"):
        C.load_config(None, [{"student": {"weights": {"foo": 1}}}])
    with pytest.raises(ValueError, match="no such file"):
        C.load_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="data.frame must be one of"):
        C.load_config(None, [{"data": {"frame": "bgr"}}])
    with pytest.raises(ValueError, match="teacher.stepz"):  # a stage section is checked too
        C.load_config(None, [{"teacher": {"stepz": 3}}])
    with pytest.raises(ValueError, match="teacher.augment.crops"):
        C.load_config(None, [{"teacher": {"augment": {"crops": None}}}])
    with pytest.raises(ValueError, match="student.augment.crop must be"):
        C.load_config(None, [{"student": {"augment": {"crop": [0, 5]}}}])


def test_overrides_and_stage_sections():
    cfg = C.load_config(None, [C.parse_override("train.lr=0.05"), {"student": {"steps": 7}}])
    assert cfg.train_for("teacher").lr == 0.05
    assert cfg.train_for("student").steps == 7
    assert cfg.train_for("teacher").steps == C.DEFAULTS["train"]["steps"]
    # augmentation per stage: a teacher on whole frames, students on the shared crops
    cfg = C.load_config(None, [C.parse_override("teacher.augment.crop=null"), {"augment": {"crop": [32, 48]}}])
    assert cfg.augment_for("teacher").crop is None
    assert cfg.augment_for("student") == cfg.augment and cfg.augment.crop == [32, 48]
    assert cfg.augment_for("teacher").scale == cfg.augment.scale


def test_augment_same_geometry_for_events_aps_labels():
    # one ramp image copied into every modality: after augmentation they must still agree
    H, W = 24, 32
    ramp = torch.arange(H * W, dtype=torch.float32).reshape(H, W)
    label = (ramp.long() % 6)
    events = torch.stack([ramp, -ramp])
    aps = (ramp / ramp.max())[None]
    cfg = C.AugmentConfig(**{"scale": [1.0, 1.0], "crop": [16, 20], "hflip": True, "brightness": 0.0, "contrast": 0.0,
           "gamma": 0.0, "noise": 0.0})
    for seed in range(6):
        e, a, lab = augment_pair(events, aps, label, cfg, np.random.default_rng(seed))
        assert e.shape == (2, 16, 20) and a.shape == (1, 16, 20) and lab.shape == (16, 20)
        np.testing.assert_allclose(e[0].numpy() / ramp.max().item(), a[0].numpy(), rtol=1e-5)
        np.testing.assert_array_equal(e[0].long().numpy() % 6, lab.numpy())
    # scaling + padding: labels padded with ignore, photometric only on aps
    cfg = cfg.replace(scale=[0.5, 0.5], crop=[24, 32], brightness=0.3)
    e, a, lab = augment_pair(events, aps, label, cfg, np.random.default_rng(0))
    assert (lab == 255).sum() == 24 * 32 - 12 * 16
    assert (e[0][lab == 255] == 0).all()
    # same seed -> same output
    e2, a2, lab2 = augment_pair(events, aps, label, cfg, np.random.default_rng(0))
    assert torch.equal(e, e2) and torch.equal(a, a2) and torch.equal(lab, lab2)


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_sampler_resume_yields_same_stream_and_ranks_partition():
    full = _take(iter(ResumableSampler(10, 3, seed=5)), 3 * 9)  # 3 epochs of 3 batches
    resumed = _take(iter(ResumableSampler(10, 3, seed=5, start_step=4)), 3 * 5)
    assert full[12:] == resumed
    epoch0 = [i for i, _ in full[:9]]
    assert len(set(epoch0)) == 9 and full[:9] != full[9:18]
    r0 = [i for i, _ in _take(iter(ResumableSampler(10, 2, seed=1, num_replicas=2, rank=0)), 4)]
    r1 = [i for i, _ in _take(iter(ResumableSampler(10, 2, seed=1, num_replicas=2, rank=1)), 4)]
    assert not set(r0) & set(r1)
    with pytest.raises(ValueError, match="too few"):
        ResumableSampler(3, 4)


def test_config_types_shadowed_overrides_and_empty_files_are_refused(tmp_path):
    """--set train.steps=abc was accepted; --set train.steps=3 trained teacher.steps (1000) silently;
    `data: 5` gave "'int' object is not subscriptable"; an empty file trained the defaults."""
    demo = REPO / "config" / "demo.yaml"
    with pytest.raises(ValueError, match="train.steps must be an integer, got 'abc'"):
        C.load_config(None, [C.parse_override("train.steps=abc")])
    with pytest.raises(ValueError, match=r"train.steps=3 is shadowed by teacher.steps=1000.*set teacher.steps"):
        C.load_config(demo, [C.parse_override("train.steps=3")])
    cfg = C.load_config(demo, [C.parse_override("teacher.steps=3"), C.parse_override("student.steps=2")])
    assert cfg.train_for("teacher").steps == 3 and cfg.train_for("student").steps == 2
    cfg = C.load_config(demo, [C.parse_override("train.lr=1e-3")])  # YAML reads 1e-3 as text
    assert cfg.train.lr == 0.001
    for text, match in (("data: 5\n", "data must be a mapping"), ("train: [1, 2]\n", "train must be a mapping"),
                        ("augment:\n  hflip: 3\n", "augment.hflip must be true or false"),
                        ("student:\n  temperature: warm\n", "student.temperature must be a number"),
                        ("teacher:\n  batch_size: 2.5\n", "teacher.batch_size must be an integer"),
                        ("train:\n  steps: null\n", r"train.steps must be an integer \(not null\)"),
                        ("", "is empty"), ("# only a comment\n", "is empty"), ("data: [\n", "not valid YAML")):
        bad = tmp_path / "c.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=match) as exc:
            C.load_config(bad)
        assert "\n" not in str(exc.value)


def test_event_inputs_beyond_the_bounds_are_refused_in_the_config():
    """bins: 100000 made the pair cache allocate n x 100000 x H x W; bins: -3 failed per window."""
    with pytest.raises(ValueError, match="beyond the bound of 1024 MiB"):
        C.load_config(None, [{"data": {"representation": "voxel_grid", "representation_params": {"bins": 100000}}}])
    with pytest.raises(ValueError, match="bins=-3"):
        C.load_config(None, [{"data": {"representation": "voxel_grid", "representation_params": {"bins": -3}}}])
    assert C.load_config(None, [{"data": {"representation": "voxel_grid", "representation_params": {"bins": 20}}}])


def test_config_is_typed_and_round_trips():
    cfg = C.load_config(REPO / "config" / "demo.yaml")
    assert isinstance(cfg.data, C.DataConfig) and isinstance(cfg.student, C.StudentConfig)
    # free build_model options, per stage: a DeepLabV3+ teacher and an LR-ASPP student
    assert cfg.model_for("teacher").options == {"aspp_channels": 128, "decoder_channels": 128}
    student = cfg.model_for("student")
    assert (student.arch, student.width_mult, student.options) == ("lraspp", 0.5, {"head_channels": 128})
    again = C.load_config(None, [cfg.to_dict()])
    assert again == cfg and again.to_dict() == cfg.to_dict()
    assert cfg.train_for("teacher").steps == 1000 and cfg.train_for("student").steps == 300
    changed = cfg.replace(data={"val_bags": ["v.bag"]})
    assert changed.data.val_bags == ["v.bag"] and cfg.data.val_bags == [] and changed.path == cfg.path
    with pytest.raises(C.ConfigError, match="unknown key data.val_bagz"):
        cfg.replace(data={"val_bagz": []})
    with pytest.raises(C.ConfigError, match="train.lr must be a number"):
        cfg.replace(train={"lr": "fast"})


def test_every_field_has_help_for_the_generated_reference():
    from dataclasses import fields

    for name, kind in C.SECTIONS.items():
        assert kind.__doc__, name
        for f in fields(kind):
            assert f.metadata.get("help"), f"{name}.{f.name} has no help"


def test_compare_seeds_is_a_count_or_a_list():
    """compare.seeds was documented as "N, or a list of seeds" but a list was refused as not an integer."""
    demo = REPO / "config" / "demo.yaml"
    cfg = C.load_config(demo, [C.parse_override("compare.seeds=[3, 7]")])
    assert cfg.compare.seeds == [3, 7] and _seeds(cfg, None) == [3, 7]
    cfg = C.load_config(demo, [C.parse_override("compare.seeds=2"), C.parse_override("train.seed=5")])
    assert _seeds(cfg, None) == [5, 6]
    for bad in ("[]", "[1.5]", "true", "three"):
        with pytest.raises(ValueError, match="compare.seeds must be an integer or a non-empty list of integers"):
            C.load_config(demo, [C.parse_override(f"compare.seeds={bad}")])
    with pytest.raises(ValueError, match="distinct"):
        _seeds(cfg, [1, 1])
    assert _seeds_arg("0,4,7") == [0, 4, 7] and _seeds_arg("3") == 3
    with pytest.raises(argparse.ArgumentTypeError):
        _seeds_arg("1,x")
