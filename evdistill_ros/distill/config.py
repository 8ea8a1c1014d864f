"""Training configuration: YAML presets merged over defaults, validated, typed.

`load_config(path, overrides)` returns a `Config` of frozen sections; the plain mapping exists only
at the file boundary (the YAML read here, a run's config.yaml and a checkpoint's training record
written from `Config.to_dict()`). The reference page of every key (docs/reference/config.md) is
generated from the sections' fields: their names, defaults and help.

    data      DataConfig: recordings, topics, event input (`.event_input`), pair cache
    model     ModelConfig: build_model's arguments (other keys: its options)
    augment   AugmentConfig: joint geometric augmentation + photometric augmentation of APS frames
    train     TrainConfig: optimisation shared by both stages
    teacher   StageConfig: the teacher stage's overrides of `train` keys, `model` and `augment`
    student   StudentConfig: the method, its losses, and the student stage's overrides
    compare   CompareConfig: `evdistill train compare`'s synthetic data and entries

    config.train_for(stage), .augment_for(stage), .model_for(stage)   a stage's effective sections
    config.replace(data={"val_bags": [...]})                          a changed copy, checked again
    parse_override("a.b=3") -> {"a": {"b": 3}}                        a --set value as a mapping

Unknown keys and wrong types raise ConfigError naming the key, so a typo never silently trains
with a default.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..classes import class_set
from ..errors import ConfigError
from ..frames import FRAME_MODES
from ..events.spec import DEFAULT_BOUNDS, DEFAULT_EVENT_INPUT, EventInput
from ..io.pair_cache import PairSource
from ..io.presets import PRESETS

METHODS = ("supervised", "kd", "evdistill")
STAGES = ("teacher", "student")
TEACHER_OUTPUTS = ("auto", "cached", "live")
# train.ce_class_weighting and student.kd_class_weighting -> the power of the median-frequency
# weights (None: unweighted)
CE_CLASS_WEIGHTINGS = {"none": None, "median_frequency": 1.0, "median_frequency_sqrt": 0.5}
KD_CLASS_WEIGHT_FRAMES = ("plain", "augmented")  # student.kd_class_weight_frames


def _opt(default: Any, help: str) -> Any:
    """A config field: its default and what it means (the reference page is generated from both)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


class Section:
    """A config section: a frozen dataclass made from the validated YAML mapping, and back."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Section":
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: copy.deepcopy(v) for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class DataConfig(Section):
    """`data`: the recordings, their topics, the event input and the pair cache."""

    bags: list = _opt([], "training recordings (paths); `--bags` on the command line replaces them")
    val_bags: list = _opt([], "validation recordings; empty = no validation during training")
    events_topic: str = _opt(PRESETS["sim"].events, "dvs_msgs/EventArray (or EventPacket) topic")
    image_topic: str = _opt(PRESETS["sim"].image, "sensor_msgs/Image APS frames (mono8/mono16/rgb8/bgr8)")
    labels_topic: str | None = _opt(PRESETS["sim"].labels, "sensor_msgs/Image mono8 class ids, 255 = ignore "
                                    "(optional in a bag)")
    # the package's one default event input (events.spec); every shipped config names its own
    representation: str = _opt(DEFAULT_EVENT_INPUT.representation, "event representation (events.embed name)")
    # replaced, not merged, by a config that names other params: {} means the registry's
    # defaults; a dict merge here once gave evdistill_2ch a 'bins'
    representation_params: dict = _opt(dict(DEFAULT_EVENT_INPUT.params), "keyword arguments of that "
                                       "representation ({} = its defaults)")
    window_ns: int | None = _opt(DEFAULT_EVENT_INPUT.window.window_ns, "event window ending at each APS frame, "
                                 "in ns ...")
    window_events: int | None = _opt(None, "... or a fixed event count instead (set exactly one of the two)")
    resize: list | None = _opt(None, "[height, width] to resize pairs to when caching; null = sensor size")
    cache_dir: str = _opt("~/.cache/evdistill_ros/pairs", "where extracted pairs are cached (keyed by "
                          "recordings + settings)")
    class_set: str = _opt("ddd17", "the labels' classes: ddd17 | dsec11 | dsec19 | sim | a YAML "
                          "(evdistill_ros.classes; model.num_classes follows)")
    frame: str = _opt("gray", "the teacher's frame: gray (BT.601 luma, DAVIS APS) | rgb (colour cameras)")
    min_events: int = _opt(0, "skip frames whose window has fewer events")

    @property
    def event_input(self) -> EventInput:
        return EventInput.from_config(self.to_dict())

    def pair_source(self, bags: Sequence[str] | None = None) -> PairSource:
        """The pair cache key of `bags` (default: data.bags) read with these settings."""
        return PairSource(tuple(str(b) for b in (self.bags if bags is None else bags)), self.event_input,
                          self.events_topic, self.image_topic, self.labels_topic,
                          tuple(self.resize) if self.resize else None, int(self.min_events or 0),
                          str(self.class_set), str(self.frame))


@dataclass(frozen=True)
class ModelConfig(Section):
    """`model`: build_model's arguments; keys other than these are passed on as its options."""

    arch: str = _opt("deeplabv3plus", "architecture (models.ARCHS): deeplabv3plus (the authors') | lraspp (built for "
                     "the CPU: the demo's student); a stage's own `model` section may choose another")
    backbone: str = _opt("mobilenetv2", "resnet18 / 34 / 50 / 101 or mobilenetv2")
    output_stride: int = _opt(16, "8, 16 or 32: the encoder's output stride")
    num_classes: int | None = _opt(None, "null: the class set's (another number is an error)")
    pretrained: str | None = _opt(None, "backbone weights to start from (any input channel count)")
    width_mult: float | None = _opt(None, "MobileNetV2 width multiplier (null = 1.0)")
    options: dict = _opt({}, "any other key of the section: a build_model option (deeplabv3plus: aspp_channels, "
                         "decoder_channels; lraspp: head_channels; null: not given)")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        names = {f.name for f in fields(cls)} - {"options"}
        return cls(**{k: copy.deepcopy(v) for k, v in d.items() if k in names},
                   options={k: copy.deepcopy(v) for k, v in d.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        return {**{k: v for k, v in out.items() if k != "options"}, **out["options"]}


@dataclass(frozen=True)
class AugmentConfig(Section):
    """`augment`: geometry identical for events, APS and labels; photometric changes on APS only."""

    scale: list | None = _opt([0.75, 1.25], "random rescale range")
    crop: list | None = _opt(None, "random crop [height, width] (padded with 0 / ignore when larger); null = none")
    hflip: bool = _opt(True, "random horizontal flip")
    brightness: float = _opt(0.2, "APS: additive brightness in [-b, b]")
    contrast: float = _opt(0.2, "APS: contrast factor in [1-c, 1+c]")
    gamma: float = _opt(0.2, "APS: gamma exp(U(-g, g))")
    noise: float = _opt(0.02, "APS: Gaussian noise, std up to this")


@dataclass(frozen=True)
class TrainConfig(Section):
    """`train`: optimisation shared by both stages (a stage section overrides any key)."""

    steps: int = _opt(2000, "optimiser steps")
    batch_size: int = _opt(8, "per process")
    optimizer: str = _opt("sgd", "sgd (the authors') | adamw")
    lr: float = _opt(1e-3, "base learning rate")
    momentum: float = _opt(0.9, "SGD momentum")
    weight_decay: float = _opt(5e-4, "L2 weight decay")
    poly_power: float = _opt(0.9, "poly decay exponent after warmup")
    warmup_steps: int = _opt(1000, "linear warmup steps (capped at steps/5)")
    warmup_start: float = _opt(0.1, "warmup starts at this fraction of lr")
    grad_clip: float | None = _opt(None, "clip the gradient norm (null = off)")
    ce_class_weighting: str = _opt("none", "label loss class weights: none | median_frequency (SegNet, from the "
                                   "training labels) | median_frequency_sqrt (gentler)")
    ce_top_fraction: float = _opt(1.0, "label loss over the hardest fraction of labelled pixels (1 = all; "
                                  "0.25 = bootstrapped CE)")
    amp: bool = _opt(True, "mixed precision on CUDA (ignored on the CPU)")
    seed: int = _opt(0, "seed of weights, data order and augmentation (compare: +1 per further seed)")
    num_workers: int = _opt(2, "DataLoader workers (0 = load in the main process)")
    threads: int | None = _opt(None, "torch CPU threads (null = torch's default)")
    log_every: int = _opt(20, "TensorBoard scalars every N steps")
    image_every: int = _opt(200, "TensorBoard prediction images every N steps")
    val_every: int = _opt(500, "validation mIoU every N steps (0 = only at the end)")
    ckpt_every: int = _opt(500, "checkpoint + resumable state every N steps")
    out_dir: str = _opt("runs", "runs go to OUT_DIR/<teacher | student_<method>[_labels]>")
    device: str = _opt("auto", "auto (cuda when available) | cpu | cuda | cuda:1")


@dataclass(frozen=True)
class StageConfig(Section):
    """`teacher` (and the stage part of `student`): overrides for one stage alone: any `train`
    key, and `model` / `augment` keys."""

    train: dict = _opt({}, "any `train` key, written directly in the section (e.g. teacher.steps)")
    model: dict = _opt({}, "`model` keys for this stage (e.g. a bigger teacher backbone)")
    augment: dict = _opt({}, "`augment` keys for this stage (e.g. the teacher on whole frames)")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StageConfig":
        train_keys = {f.name for f in fields(TrainConfig)}
        return cls(train={k: copy.deepcopy(v) for k, v in d.items() if k in train_keys},
                   model=copy.deepcopy(dict(d.get("model") or {})), augment=copy.deepcopy(dict(d.get("augment") or {})))

    def to_dict(self) -> dict[str, Any]:
        out = copy.deepcopy(self.train)
        if self.model:
            out["model"] = copy.deepcopy(self.model)
        if self.augment:
            out["augment"] = copy.deepcopy(self.augment)
        return out


@dataclass(frozen=True)
class StudentConfig(StageConfig):
    """`student`: the distillation method and its losses, plus the student stage's overrides."""

    method: str = _opt("evdistill", "supervised | kd | evdistill")
    use_labels: bool = _opt(False, "evdistill: add cross-entropy on event labels when the recordings have them")
    teacher: str | None = _opt(None, "teacher checkpoint or teacher card (kd, evdistill); --teacher overrides")
    temperature: float = _opt(1.0, "pixel-wise KD temperature")
    affinity_nodes: int = _opt(16, "affinity graph pooled to at most N x N nodes")
    kd_class_weighting: str = _opt("none", "pixel KD class weights: none | median_frequency | "
                                   "median_frequency_sqrt (of the teacher's predictions)")
    kd_class_weight_frames: str = _opt("plain", "the frames those weights count the teacher's predictions on: plain "
                                       "(training frames as cached) | augmented (as the training batches see them)")
    teacher_outputs: str = _opt("auto", "the teacher's soft predictions: cached (once per training frame, stored "
                                "beside the pair cache) | live (every batch) | auto (cached for a teacher card)")
    weights: dict = _opt({"ce": 10.0, "recon": 10.0, "pixel": 20.0, "affinity": 0.1, "a2e": 1.0, "a2e_gen": 1.0},
                         "loss weights; 0 switches a term off: ce (labels), recon (E2A), pixel (KD), affinity, "
                         "a2e (crafted pairs), a2e_gen (their generator)")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StudentConfig":
        own = {f.name for f in fields(cls)} - {"train", "model", "augment"}
        stage = StageConfig.from_dict(d)
        return cls(train=stage.train, model=stage.model, augment=stage.augment,
                   **{k: copy.deepcopy(v) for k, v in d.items() if k in own})

    def to_dict(self) -> dict[str, Any]:
        own = [f.name for f in fields(self) if f.name not in ("train", "model", "augment")]
        return {**copy.deepcopy(self.train), **{k: copy.deepcopy(getattr(self, k)) for k in own},
                **({"model": copy.deepcopy(self.model)} if self.model else {}),
                **({"augment": copy.deepcopy(self.augment)} if self.augment else {})}


@dataclass(frozen=True)
class CompareConfig(Section):
    """`compare`: `evdistill train compare`'s synthetic data and the networks it trains."""

    out_dir: str = _opt("compare_output", "where `evdistill train compare` writes recordings, runs and report")
    seconds: float = _opt(4.0, "length of each simulated sequence (s)")
    train_sequences: int = _opt(3, "normal-light training sequences")
    night_train_sequences: int = _opt(1, "night training sequences (APS poor, events fine)")
    test_sequences: int = _opt(1, "held-out normal test sequences (other seeds)")
    night_sequences: int = _opt(1, "held-out night test sequences")
    fast_sequences: int = _opt(0, "held-out fast-motion test sequences (APS motion-blurred; 0 = none)")
    fast_sim: dict = _opt({"speed": 25.0, "full_well_time": 0.08}, "that scenario's simulator settings")
    width: int = _opt(160, "simulated sensor width")
    height: int = _opt(120, "simulated sensor height")
    seed: int = _opt(0, "seed of the simulated sequences")
    methods: list = _opt(["supervised", "kd", "evdistill", "evdistill+labels"], "entries: "
                         "METHOD[+labels][-recon|-pixel|-affinity|-a2e][@uK][:N] (docs/training.md)")
    seeds: int | list = _opt(1, "train every network with N seeds (train.seed, +1, ...): mean ± std and paired "
                             "differences; or a list of seeds")


SECTIONS: dict[str, type[Section]] = {"data": DataConfig, "model": ModelConfig, "augment": AugmentConfig,
                                      "train": TrainConfig, "teacher": StageConfig, "student": StudentConfig,
                                      "compare": CompareConfig}


@dataclass(frozen=True)
class Config:
    """A training configuration: typed sections; `path` is the YAML it was read from (None: defaults)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher: StageConfig = field(default_factory=StageConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    path: str | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: str | None = None) -> "Config":
        """From a validated mapping (load_config validates; use it for YAML and overrides)."""
        return cls(**{name: kind.from_dict(d.get(name) or {}) for name, kind in SECTIONS.items()}, path=path)

    def to_dict(self) -> dict[str, Any]:
        """The plain form: what config.yaml of a run and a checkpoint's training record hold."""
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    def replace(self, **changes: Any) -> "Config":
        """A copy with sections replaced; a mapping merges into its section (checked like a YAML)."""
        plain = {k: v for k, v in changes.items() if isinstance(v, Mapping)}
        typed = {k: v for k, v in changes.items() if not isinstance(v, Mapping)}
        out = dataclasses.replace(self, **typed) if typed else self
        return _typed(out.to_dict(), [plain], out.path) if plain else out

    def stage(self, stage: str) -> StageConfig:
        if stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {stage!r}")
        return self.teacher if stage == "teacher" else self.student

    def train_for(self, stage: str) -> TrainConfig:
        """`train` with the stage's overrides applied (stage: teacher | student)."""
        return TrainConfig.from_dict({**self.train.to_dict(), **self.stage(stage).train})

    def augment_for(self, stage: str | None) -> AugmentConfig:
        """`augment` with the stage's overrides (e.g. a teacher on whole frames, students on crops)."""
        base = self.augment.to_dict()
        return AugmentConfig.from_dict(base if stage is None else merge(base, self.stage(stage).augment))

    def model_for(self, stage: str) -> ModelConfig:
        """`model` with the stage's overrides (e.g. a bigger teacher backbone)."""
        return ModelConfig.from_dict(merge(self.model.to_dict(), self.stage(stage).model))


DEFAULTS: dict[str, Any] = {name: kind().to_dict() for name, kind in SECTIONS.items()}


# Sections whose keys may be anything (free keyword arguments passed on).
_FREE = {("data", "representation_params"), ("model",), ("student", "weights"), ("compare", "fast_sim")}
# Keys a stage section may carry besides `train` keys.
_STAGE_EXTRA = {
    "teacher": {"model", "augment"},
    "student": {"method", "use_labels", "teacher", "temperature", "affinity_nodes", "kd_class_weighting",
                "kd_class_weight_frames", "weights", "teacher_outputs", "model", "augment"},
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
_COUNT_OR_LIST = {("compare", "seeds")}  # an integer N, or a list of integers


def _count_or_list(where: str, value: Any) -> int | list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                          for v in value):
        return list(value)
    raise _type_error(where, value, "an integer or a non-empty list of integers")


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
        elif here in _COUNT_OR_LIST:
            cfg[key] = _count_or_list(".".join(here), value)
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
        crop = _augment_dict(cfg, stage)["crop"]
        if crop is not None and (not isinstance(crop, (list, tuple)) or len(crop) != 2 or min(crop) <= 0):
            where = f"{stage}.augment" if stage else "augment"
            raise ConfigError(f"config: {where}.crop must be [height, width] or null, got {crop!r}")
    if cfg["student"]["temperature"] <= 0:
        raise ConfigError("config: student.temperature must be > 0")
    for key, allowed in (("kd_class_weighting", CE_CLASS_WEIGHTINGS), ("kd_class_weight_frames", KD_CLASS_WEIGHT_FRAMES),
                         ("teacher_outputs", TEACHER_OUTPUTS)):
        if cfg["student"][key] not in allowed:
            raise ConfigError(f"config: student.{key} must be one of {', '.join(allowed)}, "
                             f"got {cfg['student'][key]!r}")
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


def load_config(path: str | os.PathLike | None, overrides: list[dict] | None = None) -> Config:
    """DEFAULTS, then the YAML file at `path` (if any), then each override mapping; validated and typed."""
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
    return _typed(cfg, overrides, None if path is None else str(path))


def _typed(cfg: dict, overrides: list[dict] | None, path: str | None) -> Config:
    for o in overrides or []:
        if not isinstance(o, Mapping):
            raise ConfigError(f"config override must be a mapping, got {o!r}")
        _check_shadowing(cfg, o)
        cfg = merge(cfg, dict(o))
    validate(cfg)
    if cfg["model"]["num_classes"] is None:  # the network predicts the class set the labels are in
        cfg["model"]["num_classes"] = class_set(cfg["data"]["class_set"]).num_classes
    return Config.from_dict(cfg, path=path)


def _check_shadowing(cfg: dict, override: Mapping) -> None:
    """An override of a `train` key that a stage section sets too would change nothing for that
    stage (the stage's key wins): refused in one line naming the key to set."""
    for key, value in override.get("train").items() if isinstance(override.get("train"), Mapping) else ():
        for stage in STAGES:
            section = cfg.get(stage) or {}
            if key in section and key not in (override.get(stage) or {}):
                raise ConfigError(f"config: train.{key}={value!r} is shadowed by {stage}.{key}={section[key]!r} "
                                  f"(a stage's key wins): set {stage}.{key} instead")


def _augment_dict(cfg: dict, stage: str | None) -> dict:
    """The validated mapping's `augment` with a stage's overrides."""
    if stage is None:
        return copy.deepcopy(cfg["augment"])
    return merge(cfg["augment"], cfg.get(stage, {}).get("augment", {}) or {})
