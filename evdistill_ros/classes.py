"""Semantic class sets: names, palette, ignore index, and the mappings between sets.

Class sets are data: the built-in ones are below, and a YAML file defines another
(`class_set("my_classes.yaml")`). A checkpoint carries its set (`class_set` in its metadata),
so nodes, evaluation, overlays and legends follow the network they run.

    ClassSet(name, names, palette, ignore_index=255)
        .num_classes, .colorize(labels), .validate(label, where), .to_dict(), ClassSet.from_dict(d)
    CLASS_SETS    {"ddd17": 6 classes (DDD17 / Ev-SegNet / EvDistill), "dsec11": DSEC-Semantic's
                  11, "dsec19": Cityscapes' 19 train ids (DSEC-Semantic's 19classes), "sim": the
                  simulator's 12 (road ... sky; maps onto ddd17 and dsec11)}; "cityscapes" names
                  dsec19 (CLASS_SET_ALIASES)
    class_set(name_or_yaml) -> ClassSet
    class_set_of(checkpoint metadata) -> ClassSet   ("ddd17" for checkpoints that name none)
    class_map(source, target) -> (256,) uint8 lookup table; ValueError when no mapping is known
    class_matrix(source, target) -> (K_source, K_target) float32 0/1 matrix of the same mapping:
                  probabilities of a `source` network map to `target` as p @ M (each target class
                  the sum of its source classes; distillation maps a teacher's soft output so)

DDD17's set stays the package default (the names below):
    CLASS_NAMES   ("flat", "background", "object", "vegetation", "human", "vehicle"), id = index
    NUM_CLASSES   6
    IGNORE_INDEX  255 (pixels without a label; excluded from losses and metrics)
    PALETTE       (NUM_CLASSES, 3) uint8 RGB, the EvDistill palette (read-only array)
    IGNORE_COLOR  RGB drawn for IGNORE_INDEX (black)
    colorize(labels, palette=PALETTE) -> (..., 3) uint8 RGB image
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("flat", "background", "object", "vegetation", "human", "vehicle")
NUM_CLASSES: int = len(CLASS_NAMES)
IGNORE_INDEX: int = 255
IGNORE_COLOR: tuple[int, int, int] = (0, 0, 0)

PALETTE: np.ndarray = np.array(
    [
        (128, 64, 128),  # flat (road, sidewalk)
        (70, 70, 70),  # background (construction + sky)
        (250, 170, 30),  # object (pole, sign, light)
        (152, 251, 152),  # vegetation
        (220, 20, 60),  # human
        (0, 0, 142),  # vehicle
    ],
    dtype=np.uint8,
)
PALETTE.setflags(write=False)


def colorize(labels: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]] = PALETTE) -> np.ndarray:
    """Map integer class ids (any shape, e.g. (H, W)) to RGB uint8 (..., 3).

    IGNORE_INDEX is drawn as IGNORE_COLOR; any other id outside the palette raises ValueError.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"colorize: labels must be an integer array, got dtype {labels.dtype}")
    pal = np.asarray(palette, dtype=np.uint8)
    if pal.ndim != 2 or pal.shape[1] != 3:
        raise ValueError(f"colorize: palette must be (K, 3), got shape {pal.shape}")
    # A 256-entry lookup table: one gather, no per-class masks.
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(pal)] = pal
    lut[IGNORE_INDEX] = IGNORE_COLOR
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        bad = lo < 0 or hi > 255 or np.any((labels >= len(pal)) & (labels != IGNORE_INDEX))
        if bad:
            valid = labels[(labels < 0) | (labels > 255) | ((labels >= len(pal)) & (labels != IGNORE_INDEX))]
            raise ValueError(
                f"colorize: label {int(valid.flat[0])} is outside 0..{len(pal) - 1} and is not IGNORE_INDEX {IGNORE_INDEX}"
            )
    return lut[labels.astype(np.intp, copy=False)]


@dataclass(frozen=True)
class ClassSet:
    """A named list of classes with their colours; label id = index, `ignore_index` = no label."""

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError(f"class set {self.name!r} has no classes")
        if len(self.names) != len(self.palette):
            raise ValueError(f"class set {self.name!r}: {len(self.names)} names but {len(self.palette)} colours")
        if len(self.names) > 255 or not 0 <= self.ignore_index <= 255 or self.ignore_index < len(self.names):
            raise ValueError(f"class set {self.name!r}: ids 0..{len(self.names) - 1} and ignore "
                             f"{self.ignore_index} must fit in uint8 without overlapping")
        if any(len(c) != 3 or not all(0 <= int(v) <= 255 for v in c) for c in self.palette):
            raise ValueError(f"class set {self.name!r}: colours are [r, g, b] with values 0..255")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @functools.cached_property  # per overlay in the nodes: built once (fields stay frozen)
    def palette_array(self) -> np.ndarray:
        arr = np.array(self.palette, dtype=np.uint8).reshape(-1, 3)
        arr.setflags(write=False)
        return arr

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        return colorize(labels, self.palette_array)

    def validate(self, label: np.ndarray, where: str) -> np.ndarray:
        """A 2-D integer label image with ids of this set or ignore_index -> uint8; ValueError otherwise."""
        label = np.asarray(label)
        if label.ndim == 3 and label.shape[2] in (3, 4) and np.array_equal(label[..., 0], label[..., 1]) \
                and np.array_equal(label[..., 0], label[..., 2]):
            label = label[..., 0]  # a grey label saved as RGB
        if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
            raise ValueError(f"{where}: a label must be a 2-D integer image, got {label.dtype} {label.shape}")
        bad = (label >= self.num_classes) & (label != self.ignore_index) | (label < 0)
        if np.any(bad):
            vals = np.unique(label[bad])[:5].tolist()
            raise ValueError(f"{where}: label values {vals} outside 0..{self.num_classes - 1} and "
                             f"{self.ignore_index} (ignore) of class set {self.name}")
        return label.astype(np.uint8, copy=False)

    def describe(self) -> str:
        return f"{self.name} ({self.num_classes} classes: {', '.join(self.names)})"

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint-metadata form (`class_set`, `classes`, `palette`, `ignore_index`)."""
        return {"class_set": self.name, "classes": list(self.names), "palette": [list(c) for c in self.palette],
                "ignore_index": self.ignore_index}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], name: str = "custom") -> "ClassSet":
        try:
            names = tuple(str(n) for n in d["classes"])
            palette = d.get("palette") or _default_palette(len(names))
            return cls(str(d.get("class_set") or d.get("name") or name), names,
                       tuple(tuple(int(v) for v in c) for c in palette), int(d.get("ignore_index", IGNORE_INDEX)))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a class set needs 'classes' (a list of names) and optionally 'palette' and "
                             f"'ignore_index': {exc}") from None


def _default_palette(k: int) -> list[tuple[int, int, int]]:
    """Distinct colours for a set given without a palette (golden-angle hues)."""
    import colorsys

    return [tuple(int(255 * v) for v in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.9)) for i in range(k)]


DDD17 = ClassSet("ddd17", CLASS_NAMES, tuple(tuple(int(v) for v in c) for c in PALETTE))
# DSEC-Semantic (ESS, Sun et al. ECCV'22): 11classes/ ids, Cityscapes colours
DSEC11 = ClassSet("dsec11", ("background", "building", "fence", "person", "pole", "road", "sidewalk", "vegetation",
                             "car", "wall", "traffic sign"),
                  ((0, 0, 0), (70, 70, 70), (190, 153, 153), (220, 20, 60), (153, 153, 153), (128, 64, 128),
                   (244, 35, 232), (107, 142, 35), (0, 0, 142), (102, 102, 156), (220, 220, 0)))
# Cityscapes' 19 train ids (DSEC-Semantic's 19classes/)
DSEC19 = ClassSet("dsec19", ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                             "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                             "motorcycle", "bicycle"),
                  ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
                   (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
                   (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)))
# The simulator's own labels (sim.scene): what its street is made of, small classes apart
SIM = ClassSet("sim", ("road", "sidewalk", "building", "wall", "vegetation", "terrain", "pole", "traffic sign",
                       "traffic light", "car", "person", "sky"),
               ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (107, 142, 35), (152, 251, 152),
                (153, 153, 153), (220, 220, 0), (250, 170, 30), (0, 0, 142), (220, 20, 60), (70, 130, 180)))
CLASS_SETS: dict[str, ClassSet] = {c.name: c for c in (DDD17, DSEC11, DSEC19, SIM)}
# other names of built-in sets (teacher cards name what the network was trained on)
CLASS_SET_ALIASES: dict[str, str] = {"cityscapes": "dsec19"}

# Mappings between sets, by class name (this package's convention, docs/datasets.md "Class sets"): each
# source class goes to the coarser class that contains it. 19 -> 11: sky is background,
# terrain is vegetation (Cityscapes' "nature"), a traffic light counts as a traffic sign,
# riders are persons, every vehicle is a car. 11 -> 6: DDD17's background is construction and
# sky, its object is poles and signs.
_BY_NAME: dict[tuple[str, str], dict[str, str]] = {
    ("dsec19", "dsec11"): {"road": "road", "sidewalk": "sidewalk", "building": "building", "wall": "wall",
                           "fence": "fence", "pole": "pole", "traffic light": "traffic sign",
                           "traffic sign": "traffic sign", "vegetation": "vegetation", "terrain": "vegetation",
                           "sky": "background", "person": "person", "rider": "person", "car": "car", "truck": "car",
                           "bus": "car", "train": "car", "motorcycle": "car", "bicycle": "car"},
    ("sim", "ddd17"): {"road": "flat", "sidewalk": "flat", "building": "background", "wall": "background",
                       "vegetation": "vegetation", "terrain": "vegetation", "pole": "object", "traffic sign": "object",
                       "traffic light": "object", "car": "vehicle", "person": "human", "sky": "background"},
    ("sim", "dsec11"): {"road": "road", "sidewalk": "sidewalk", "building": "building", "wall": "wall",
                        "vegetation": "vegetation", "terrain": "vegetation", "pole": "pole",
                        "traffic sign": "traffic sign", "traffic light": "traffic sign", "car": "car",
                        "person": "person", "sky": "background"},
    ("dsec11", "ddd17"): {"background": "background", "building": "background", "fence": "background",
                          "person": "human", "pole": "object", "road": "flat", "sidewalk": "flat",
                          "vegetation": "vegetation", "car": "vehicle", "wall": "background",
                          "traffic sign": "object"},
}


def _lut(source: ClassSet, target: ClassSet, by_name: Mapping[str, str]) -> np.ndarray:
    lut = np.full(256, target.ignore_index, np.uint8)
    for i, name in enumerate(source.names):
        if name not in by_name or by_name[name] not in target.names:
            raise ValueError(f"mapping {source.name} -> {target.name} has no target for {name!r}")
        lut[i] = target.names.index(by_name[name])
    return lut


def class_map(source: ClassSet | str, target: ClassSet | str) -> np.ndarray:
    """Lookup table (256,) uint8 taking label ids of `source` to `target` (ignore -> ignore);
    identity for equal sets, composed through dsec11 for dsec19 -> ddd17. A user set maps with
    its YAML's `maps_to: {target: {class: target class}}`."""
    src = class_set(source) if isinstance(source, str) else source
    dst = class_set(target) if isinstance(target, str) else target
    if src == dst:
        lut = np.arange(256, dtype=np.uint8)
        return lut
    direct = _BY_NAME.get((src.name, dst.name)) or _USER_MAPS.get((src.name, dst.name))
    if direct is not None:
        lut = _lut(src, dst, direct)
    elif (src.name, dst.name) == ("dsec19", "ddd17"):
        lut = class_map("dsec11", "ddd17")[class_map("dsec19", "dsec11")]
    else:
        known = ", ".join(f"{a} -> {b}" for a, b in [*_BY_NAME, ("dsec19", "ddd17"), *_USER_MAPS])
        raise ValueError(f"no mapping from class set {src.name} to {dst.name} (known: {known})")
    lut[src.ignore_index] = dst.ignore_index
    return lut


def class_matrix(source: ClassSet | str, target: ClassSet | str) -> np.ndarray:
    """(K_source, K_target) float32 with M[s, t] = 1 where class_map takes s to t: a probability
    vector over `source` classes times M sums the probabilities of each target class's sources."""
    src = class_set(source) if isinstance(source, str) else source
    dst = class_set(target) if isinstance(target, str) else target
    lut = class_map(src, dst)[: src.num_classes]
    if np.any(lut >= dst.num_classes):  # a source class mapped to ignore has no target to add to
        lost = src.names[int(np.argmax(lut >= dst.num_classes))]
        raise ValueError(f"mapping {src.name} -> {dst.name} sends {lost!r} to ignore: its probability would be lost")
    m = np.zeros((src.num_classes, dst.num_classes), np.float32)
    m[np.arange(src.num_classes), lut] = 1.0
    return m


_USER_MAPS: dict[tuple[str, str], dict[str, str]] = {}


def class_set(name_or_path: str | os.PathLike) -> ClassSet:
    """A built-in set by name, or a YAML file: {name, classes: [...], palette: [[r, g, b], ...],
    ignore_index: 255, maps_to: {ddd17: {my class: ddd17 class, ...}}} (palette optional)."""
    key = str(name_or_path)
    key = CLASS_SET_ALIASES.get(key, key)
    if key in CLASS_SETS:
        return CLASS_SETS[key]
    path = Path(key)
    if not path.suffix.lower() in (".yaml", ".yml"):
        raise ValueError(f"unknown class set {key!r}; built in: {', '.join(CLASS_SETS)}, or a .yaml file")
    import yaml  # on use: only user-defined sets are YAML

    try:
        d = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"class set {path}: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError(f"class set {path}: expected a mapping with 'classes'")
    cs = ClassSet.from_dict(d, name=path.stem)
    for target, by_name in (d.get("maps_to") or {}).items():
        _USER_MAPS[(cs.name, str(target))] = {str(k): str(v) for k, v in dict(by_name).items()}
        _lut(cs, class_set(str(target)), _USER_MAPS[(cs.name, str(target))])  # checked now, not at use
    return cs


def class_set_of(meta: Mapping[str, Any]) -> ClassSet:
    """The class set a checkpoint (its metadata) predicts: the named built-in set, else the set
    its `classes` / `palette` describe, else DDD17's (the authors' checkpoints name none)."""
    name = meta.get("class_set")
    if isinstance(name, str) and name in CLASS_SETS and (
            not meta.get("classes") or tuple(meta["classes"]) == CLASS_SETS[name].names):
        return CLASS_SETS[name]
    if meta.get("classes"):
        names = tuple(str(n) for n in meta["classes"])
        for cs in CLASS_SETS.values():
            if cs.names == names:
                return cs
        return ClassSet.from_dict(meta, name=str(name or "custom"))
    return DDD17
