"""Training configuration: YAML presets merged over defaults, validated, one dict.

A config has these sections (every key is documented in config/demo.yaml):

    data      bags, topics, event representation + window, cache location, input size
    model     architecture of teacher and student (build_model keyword arguments)
    augment   joint geometric augmentation + photometric augmentation of APS frames
    train     optimisation shared by both stages (steps, batch, optimiser, schedule, logging)
    teacher   per-stage overrides of `train` keys for the teacher stage (plus `model` overrides)
    student   per-stage overrides of `train` keys, the distillation `method`, `use_labels`,
              loss `weights`, KD `temperature`, affinity graph size, A2E generator settings
    compare   synthetic data for `evdistill train compare`

API:
    DEFAULTS                         the default config (a nested dict)
    load_config(path, overrides=None) -> dict   YAML merged over DEFAULTS, validated
    merge(base, override) -> dict    recursive dict merge (override wins), new dict
    stage_config(cfg, stage) -> dict `train` with the stage's overrides applied
    parse_override("a.b=3") -> dict  a dotted command-line override as a nested dict

Unknown keys raise ValueError naming the key, so a typo never silently trains with a default.
"""
from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ..classes import class_set
from ..errors import ConfigError
from ..frames import FRAME_MODES
from ..events.spec import DEFAULT_BOUNDS, DEFAULT_EVENT_INPUT, EventInput
from ..io.presets import PRESETS

METHODS = ("supervised", "kd", "evdistill")
STAGES = ("teacher", "student")
TEACHER_OUTPUTS = ("auto", "cached", "live")
# train.ce_class_weighting and student.kd_class_weighting -> the power of the median-frequency
# weights (None: unweighted)
CE_CLASS_WEIGHTINGS = {"none": None, "median_frequency": 1.0, "median_frequency_sqrt": 0.5}

DEFAULTS: dict[str, Any] = {
    "data": {
        "bags": [],
        "val_bags": [],
        "events_topic": PRESETS["sim"].events,
        "image_topic": PRESETS["sim"].image,
        "labels_topic": PRESETS["sim"].labels,
        # the package's one default event input (events.spec); every shipped config names its own
        "representation": DEFAULT_EVENT_INPUT.representation,
        # replaced, not merged, by a config that names other params: {} means the registry's
        # defaults; a dict merge here once gave evdistill_2ch a 'bins'
        "representation_params": dict(DEFAULT_EVENT_INPUT.params),
        "window_ns": DEFAULT_EVENT_INPUT.window.window_ns,
        "window_events": None,
        "resize": None,
        "cache_dir": "~/.cache/evdistill_ros/pairs",
        # what the labels mean: ddd17 | dsec11 | dsec19 | a class-set YAML (evdistill_ros.classes)
        "class_set": "ddd17",
        # the teacher's frame: gray (BT.601 luma, DAVIS APS) | rgb (colour cameras, DSEC's ev_inf frames)
        "frame": "gray",
        "min_events": 0,
    },
    "model": {
        "arch": "deeplabv3plus",
        "backbone": "mobilenetv2",
        "output_stride": 16,
        "num_classes": None,  # None: the class set's; another number is an error
        "pretrained": None,
        "width_mult": None,
    },
    "augment": {
        "scale": [0.75, 1.25],
        "crop": None,
        "hflip": True,
        "brightness": 0.2,
        "contrast": 0.2,
        "gamma": 0.2,
        "noise": 0.02,
    },
    "train": {
        "steps": 2000,
        "batch_size": 8,
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "poly_power": 0.9,
        "warmup_steps": 1000,
        "warmup_start": 0.1,
        "grad_clip": None,
        # the label loss (teacher, supervised, evdistill + labels): class weights and hardest fraction
        "ce_class_weighting": "none",  # one of CE_CLASS_WEIGHTINGS (median frequency: SegNet, from the training labels)
        "ce_top_fraction": 1.0,  # 1 = every labelled pixel; e.g. 0.25 = bootstrapped CE on the hardest quarter
        "amp": True,
        "seed": 0,
        "num_workers": 2,
        "threads": None,
        "log_every": 20,
        "image_every": 200,
        "val_every": 500,
        "ckpt_every": 500,
        "out_dir": "runs",
        "device": "auto",
    },
    "teacher": {},
    "student": {
        "method": "evdistill",
        "use_labels": False,
        "teacher": None,
        "temperature": 1.0,
        "affinity_nodes": 16,
        # pixel KD class weights (kd, evdistill): one of CE_CLASS_WEIGHTINGS, from the teacher's predictions
        "kd_class_weighting": "none",
        # the teacher's soft predictions: cached (run once per training frame, stored beside the pair
        # cache, augmented like the labels) | live (run on every batch) | auto (cached for a teacher
        # card, live for this package's teachers, whose photometric augmentation then reaches the teacher)
        "teacher_outputs": "auto",
        "weights": {"ce": 10.0, "recon": 10.0, "pixel": 20.0, "affinity": 0.1, "a2e": 1.0, "a2e_gen": 1.0},
    },
    "compare": {
        "out_dir": "compare_output",
        "seconds": 4.0,
        "train_sequences": 3,
        "night_train_sequences": 1,
        "test_sequences": 1,
        "night_sequences": 1,
        "fast_sequences": 0,  # fast-motion test scenario (APS motion blur); 0 = not tested
        "fast_sim": {"speed": 25.0, "full_well_time": 0.08},  # simulator parameters of that scenario
        "width": 160,
        "height": 120,
        "seed": 0,
        "methods": ["supervised", "kd", "evdistill", "evdistill+labels"],
        "seeds": 1,  # training seeds (train.seed, +1, ...): mean ± std and paired differences
    },
}

# Sections whose keys may be anything (free keyword arguments passed on).
_FREE = {("data", "representation_params"), ("model",), ("student", "weights"), ("compare", "fast_sim")}
# Keys a stage section may carry besides `train` keys.
_STAGE_EXTRA = {
    "teacher": {"model", "augment"},
    "student": {"method", "use_labels", "teacher", "temperature", "affinity_nodes", "kd_class_weighting", "weights",
                "teacher_outputs", "model", "augment"},
}


def merge(base: dict, override: dict) -> dict:
    """Recursive merge: dicts merge key by key, everything else in `override` replaces."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Keys whose default is not None but which a config may set to null
_NULLABLE = {("data", "labels_topic"), ("data", "window_ns"), ("data", "window_events")}


def _type_error(where: str, value: Any, want: str) -> ConfigError:
    return ConfigError(f"config: {where} must be {want}, got {value!r}")


def _checked_value(where: str, value: Any, default: Any, nullable: bool) -> Any:
    """`value` of the type `default` has (numbers written as strings, e.g. --set train.lr=1e-3 which
    YAML reads as text, become numbers); ValueError naming the key otherwise."""
    if value is None:
        if default is None or nullable:
            return None
        kind = ("true or false" if isinstance(default, bool) else "an integer" if isinstance(default, int) else
                "a number" if isinstance(default, float) else "a string" if isinstance(default, str) else "a list")
        raise _type_error(where, value, f"{kind} (not null)")
    if default is None:
        return value  # free type where the default is null (checked by validate where it matters)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _type_error(where, value, "true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(where, value, "an integer")
    elif isinstance(default, float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise _type_error(where, value, "a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(where, value, "a number")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise _type_error(where, value, "a string")
    elif isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise _type_error(where, value, "a list")
    return value


def _check_keys(cfg: dict, ref: dict, path: tuple[str, ...]) -> None:
    for key, value in cfg.items():
        here = path + (key,)
        if not path and key in DEFAULTS and isinstance(DEFAULTS[key], dict) and not isinstance(value, dict):
            raise ConfigError(f"config: {key} must be a mapping of its keys, got {value!r}")
        if path and path[0] in ("teacher", "student") and len(path) == 1:
            allowed = set(DEFAULTS["train"]) | _STAGE_EXTRA[path[0]] | set(DEFAULTS.get(path[0], {}))
            if key not in allowed:
                raise ConfigError(f"config: unknown key {'.'.join(here)} (allowed: {', '.join(sorted(allowed))})")
            if key == "augment":
                if not isinstance(value, dict):
                    raise ConfigError(f"config: {'.'.join(here)} must be a mapping of augment keys")
                _check_keys(value, DEFAULTS["augment"], here)
            if key == "weights" and isinstance(value, dict):
                bad = set(value) - set(DEFAULTS["student"]["weights"])
                if bad:
                    raise ConfigError(f"config: unknown loss weight student.weights.{sorted(bad)[0]} "
                                     f"(known: {', '.join(DEFAULTS['student']['weights'])})")
            if key in DEFAULTS["train"]:
                cfg[key] = _checked_value(".".join(here), value, DEFAULTS["train"][key], ("train", key) in _NULLABLE)
            elif key in DEFAULTS[path[0]] and not isinstance(DEFAULTS[path[0]][key], dict):
                cfg[key] = _checked_value(".".join(here), value, DEFAULTS[path[0]][key], here in _NULLABLE)
            continue
        if here in _FREE or path in _FREE:
            continue
        if key not in ref:
            raise ConfigError(f"config: unknown key {'.'.join(here)} (known: {', '.join(sorted(ref))})")
        if isinstance(ref[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config: {'.'.join(here)} must be a mapping, got {value!r}")
            _check_keys(value, ref[key], here)
        else:
            cfg[key] = _checked_value(".".join(here), value, ref[key], here in _NULLABLE)


def validate(cfg: dict) -> dict:
    """Check keys and values; returns `cfg` (unchanged) or raises ValueError with the offending key."""
    _check_keys(cfg, DEFAULTS, ())
    if cfg["student"]["method"] not in METHODS:
        raise ConfigError(f"config: student.method must be one of {METHODS}, got {cfg['student']['method']!r}")
    for stage in ("train", "teacher", "student"):
        opt = cfg[stage].get("optimizer")
        if opt is not None and opt not in ("sgd", "adamw"):
            raise ConfigError(f"config: {stage}.optimizer must be 'sgd' or 'adamw', got {opt!r}")
    for key, w in cfg["student"]["weights"].items():
        if not isinstance(w, (int, float)) or w < 0:
            raise ConfigError(f"config: student.weights.{key} must be a number >= 0, got {w!r}")
    d = cfg["data"]
    if (d["window_ns"] is None) == (d["window_events"] is None):
        raise ConfigError("config: set exactly one of data.window_ns and data.window_events")
    try:  # the representation and its parameters, as the registry knows them, within the bounds
        # of one embedding (events.spec.InputBounds; windows are taken at frames: no stride bound)
        size = d["resize"]
        h, w = size if isinstance(size, (list, tuple)) and len(size) == 2 else (2048, 2048)
        replace(DEFAULT_BOUNDS, max_windows_per_s=float("inf"), min_stride_events=1).check(
            EventInput.from_config(d), h, w)
    except ValueError as exc:
        raise ConfigError(f"config: data: {exc}") from None
    if d["resize"] is not None and (len(d["resize"]) != 2 or min(d["resize"]) <= 0):
        raise ConfigError(f"config: data.resize must be [height, width], got {d['resize']!r}")
    for stage in (None, *(st for st in STAGES if "augment" in cfg[st])):
        crop = augment_config(cfg, stage)["crop"]
        if crop is not None and (not isinstance(crop, (list, tuple)) or len(crop) != 2 or min(crop) <= 0):
            where = f"{stage}.augment" if stage else "augment"
            raise ConfigError(f"config: {where}.crop must be [height, width] or null, got {crop!r}")
    if cfg["student"]["temperature"] <= 0:
        raise ConfigError("config: student.temperature must be > 0")
    if cfg["student"]["kd_class_weighting"] not in CE_CLASS_WEIGHTINGS:
        raise ConfigError(f"config: student.kd_class_weighting must be one of {', '.join(CE_CLASS_WEIGHTINGS)}, "
                         f"got {cfg['student']['kd_class_weighting']!r}")
    if cfg["student"]["teacher_outputs"] not in TEACHER_OUTPUTS:
        raise ConfigError(f"config: student.teacher_outputs must be one of {', '.join(TEACHER_OUTPUTS)}, "
                         f"got {cfg['student']['teacher_outputs']!r}")
    for where in ("train", *STAGES):
        section = cfg["train"] if where == "train" else cfg[where]
        if section.get("ce_class_weighting", "none") not in CE_CLASS_WEIGHTINGS:
            raise ConfigError(f"config: {where}.ce_class_weighting must be one of {', '.join(CE_CLASS_WEIGHTINGS)}, "
                             f"got {section['ce_class_weighting']!r}")
        top = section.get("ce_top_fraction", 1.0)
        if not isinstance(top, (int, float)) or not 0 < float(top) <= 1:
            raise ConfigError(f"config: {where}.ce_top_fraction must be in (0, 1], got {top!r}")
    if d["frame"] not in FRAME_MODES:
        raise ConfigError(f"config: data.frame must be one of {FRAME_MODES}, got {d['frame']!r}")
    try:
        classes = class_set(d["class_set"])
    except ValueError as exc:
        raise ConfigError(f"config: data.class_set: {exc}") from None
    if classes.ignore_index != 255:  # the losses and the pair cache use 255
        raise ConfigError(f"config: data.class_set {classes.name}: training needs ignore_index 255")
    for where, model in (("model", cfg["model"]), *((f"{st}.model", cfg[st].get("model") or {}) for st in STAGES)):
        k = model.get("num_classes")
        if k is not None and int(k) != classes.num_classes:
            raise ConfigError(f"config: {where}.num_classes is {k} but data.class_set {classes.describe()}")
    return cfg


def parse_override(text: str) -> dict:
    """'train.lr=0.01' -> {'train': {'lr': 0.01}} (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"config override {text!r}: expected KEY.PATH=VALUE")
    key, value = text.split("=", 1)
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(value)
    return out


def load_config(path: str | os.PathLike | None, overrides: list[dict] | None = None) -> dict:
    """DEFAULTS, then the YAML file at `path` (if any), then each override dict; validated."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config: no such file {p}")
        try:
            with open(p) as f:
                loaded = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {p}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if loaded is None:  # an empty file would train the 2000-step defaults without a word
            raise ConfigError(f"config {p} is empty: start from config/demo.yaml (every key documented)")
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {p}: top level must be a mapping")
        cfg = merge(cfg, loaded)
        cfg["_path"] = str(p)
    for o in overrides or []:
        _check_shadowing(cfg, o)
        cfg = merge(cfg, o)
    path_key = cfg.pop("_path", None)
    validate(cfg)
    if cfg["model"]["num_classes"] is None:  # the network predicts the class set the labels are in
        cfg["model"]["num_classes"] = class_set(cfg["data"]["class_set"]).num_classes
    if path_key:
        cfg["_path"] = path_key
    return cfg


def _check_shadowing(cfg: dict, override: dict) -> None:
    """An override of a `train` key that a stage section sets too would change nothing for that
    stage (the stage's key wins, stage_config): refused in one line naming the key to set."""
    for key, value in (override.get("train") or {}).items() if isinstance(override.get("train"), dict) else ():
        for stage in STAGES:
            section = cfg.get(stage) or {}
            if key in section and key not in (override.get(stage) or {}):
                raise ConfigError(f"config: train.{key}={value!r} is shadowed by {stage}.{key}={section[key]!r} "
                                 f"(a stage's key wins): set {stage}.{key} instead")


def stage_config(cfg: dict, stage: str) -> dict:
    """The `train` section with `cfg[stage]`'s train-key overrides applied (stage: teacher|student)."""
    if stage not in STAGES:
        raise ConfigError(f"stage must be one of {STAGES}, got {stage!r}")
    out = copy.deepcopy(cfg["train"])
    for key, value in cfg.get(stage, {}).items():
        if key in out:
            out[key] = copy.deepcopy(value)
    return out


def augment_config(cfg: dict, stage: str | None) -> dict:
    """`augment` with the stage's `augment` overrides (e.g. a teacher on whole frames, students on crops)."""
    if stage is None:
        return copy.deepcopy(cfg["augment"])
    return merge(cfg["augment"], cfg.get(stage, {}).get("augment", {}) or {})


def model_config(cfg: dict, stage: str) -> dict:
    """`model` with the stage's `model` overrides (e.g. a bigger teacher backbone)."""
    return merge(cfg["model"], cfg.get(stage, {}).get("model", {}) or {})
