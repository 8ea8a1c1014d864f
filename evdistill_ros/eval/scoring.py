"""What evaluation and visualisation share: networks loaded for a data set, the class sets they
are scored in, and the samples they read.

    ScoringSetup.open(data, aps_ckpt=..., event_ckpt=..., ...) -> ScoringSetup
        .networks {"aps" | "events": models.Predictor}, .maps (per network: the class set it is
        scored in and the lookup tables into it), .samples (an iterator of io Samples)
    usable(samples, modalities, skipped, limit=None)   the samples that carry a label and every
        input the networks read; the others are counted in `skipped`
    sample_input(sample, modality), layout_class_set(fmt, options), scoring_maps(...), open_samples(...)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, MutableMapping

import numpy as np

from ..classes import CLASS_SETS, ClassSet, class_map, class_set
from ..events.spec import EventInput
from ..io.samples import FORMATS as SAMPLE_FORMATS
from ..io.samples import detect_format as detect
from ..io.samples import iter_samples
from ..models.predictor import MODALITIES, Predictor

# event representation each fixed-layout format stores (bags, ESS and caches hold their own)
FIXED_REPRESENTATION = {"evdistill-png": "evdistill_2ch", "evsegnet": "evsegnet_6ch"}
FORMATS = SAMPLE_FORMATS


def sample_input(sample: Any, modality: str) -> np.ndarray | None:
    """The array a network of ``modality`` reads from a Sample: its APS frame or its event embedding."""
    if modality == "aps":
        return getattr(sample, "aps", None)
    if modality == "events":
        return getattr(sample, "events", None)
    raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")


def usable(samples: Iterable[Any], modalities: Iterable[str], skipped: MutableMapping[str, int],
           limit: int | None = None) -> Iterator[Any]:
    """The samples holding a label and every modality's input, at most `limit`; the others are
    counted in `skipped` ("no_label", "no_<modality>")."""
    modalities = tuple(modalities)
    taken = 0
    for s in samples:
        if limit is not None and taken >= limit:
            return
        if s.label is None:
            skipped["no_label"] = skipped.get("no_label", 0) + 1
            continue
        missing = [m for m in modalities if sample_input(s, m) is None]
        if missing:
            for m in missing:
                skipped[f"no_{m}"] = skipped.get(f"no_{m}", 0) + 1
            continue
        taken += 1
        yield s


def layout_class_set(fmt: str, options: Mapping[str, Any] | None = None) -> ClassSet:
    """The class set a layout's labels are in: DSEC's 11 or 19 (`classes` option), else DDD17's."""
    if fmt == "dsec":
        return class_set(f"dsec{int((options or {}).get('classes', 11))}")
    return CLASS_SETS["ddd17"]


def maps_onto(source: ClassSet, target: ClassSet) -> bool:
    try:
        class_map(source, target)
        return True
    except ValueError:
        return False


def scoring_maps(net: ClassSet, labels: ClassSet, target: ClassSet | None, what: str) -> dict[str, Any]:
    """ModelEvaluator's `classes`, `pred_map`, `label_map` for scoring `net`'s predictions against
    `labels`; a mismatch without a `target` set is a ValueError in one line."""
    if target is None:
        if net != labels:
            hint = next((f"; --class-map {t.name} scores both in {t.name}" for t in (net, labels)
                         if maps_onto(net, t) and maps_onto(labels, t)), "")
            raise ValueError(f"{what} predicts {net.describe()}, the labels are {labels.name} "
                             f"({labels.num_classes} classes){hint}")
        return {"classes": net}
    return {"classes": target, "pred_map": None if net == target else class_map(net, target),
            "label_map": None if labels == target else class_map(labels, target)}


def common_set(nets: list[ClassSet]) -> ClassSet | None:
    """For a recording without labels whose networks predict other classes than the layout's (a
    Cityscapes teacher card beside a DDD17 student, say): the first of the networks' sets that
    every one of them maps onto, so their predictions are drawn side by side. None when none fits."""
    for candidate in nets:
        if all(maps_onto(n, candidate) for n in nets):
            return candidate
    return None


def detect_format(data: str | Path) -> str:
    """The data format of ``data`` (io.samples.detect_format; FileNotFoundError when missing)."""
    if not Path(data).exists():
        raise FileNotFoundError(f"data not found: {data}")
    return detect(data)


def open_samples(data: str | Path, fmt: str, event_input: EventInput | None = None,
                 options: Mapping[str, Any] | None = None, network: str = "the event network") -> Iterator[Any]:
    """Samples of ``data`` in format ``fmt``. Bags, ESS recordings and caches give the event
    network's own event input (``event_input``); formats that store one fixed embedding
    (evdistill-png, evsegnet) must hold the network's representation."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r}; known: {', '.join(FORMATS)}")
    opts = dict(options or {})
    if "split" in opts and fmt in ("bag", "cache"):
        raise ValueError(f"--split applies to test-set directories, not to {fmt} data")
    spec = event_input
    if fmt in FIXED_REPRESENTATION and spec is not None and spec.representation != FIXED_REPRESENTATION[fmt]:
        raise ValueError(f"{network} reads {spec.representation!r} event embeddings but {fmt} data "
                         f"holds {FIXED_REPRESENTATION[fmt]!r}")
    if spec is not None and fmt in ("bag", "ess", "dsec", "cache"):
        opts.setdefault("event_input", spec)
    if fmt in ("bag", "dsec") and spec is None:
        opts.setdefault("need_events", False)  # an APS network alone: no event windows to build
    if fmt != "bag" and any(opts.get(k) for k in ("events_topic", "image_topic", "labels_topic")):
        raise ValueError(f"topic names apply to bags, not to {fmt} data")
    opts = {k: v for k, v in opts.items() if v is not None}
    try:
        return iter_samples(data, fmt, **opts)
    except ValueError as exc:
        raise ValueError(f"{network if spec is not None else data}: {exc}") from None


@dataclass
class ScoringSetup:
    """Networks opened for one data set, the class set each is scored (or drawn) in, its samples."""

    data: Path
    fmt: str
    networks: dict[str, Predictor]
    checkpoints: dict[str, str]
    data_classes: ClassSet
    target: ClassSet | None
    maps: dict[str, dict[str, Any]]
    samples: Iterator[Any]
    # visualisation of a recording whose labels no network can be scored against: drawn in a
    # common set; the error is raised at the first label met
    label_error: str = ""
    label_map: np.ndarray | None = field(default=None)

    @property
    def event_input(self) -> EventInput | None:
        net = self.networks.get("events")
        return None if net is None else net.event_input

    @property
    def shown(self) -> ClassSet:
        """The class set predictions and labels are drawn in."""
        return self.target or next((mp["classes"] for mp in self.maps.values()), self.data_classes)

    @classmethod
    def open(cls, data: str | Path, *, aps_ckpt: str | Path | None = None, event_ckpt: str | Path | None = None,
             format: str | None = None, device: str = "cpu", backend: str = "auto",
             sample_options: Mapping[str, Any] | None = None, labels_classes: str | None = None,
             class_map_to: str | None = None, unlabelled_ok: bool = False) -> "ScoringSetup":
        """Load the networks (checked to read what their flag says), choose the class sets, open the
        samples. `unlabelled_ok`: networks of another class set than the labels' are drawn in a set
        they share and the mismatch is raised only at the first label (visualisation)."""
        if str(device).startswith("cuda"):
            import torch  # on use: only to ask whether CUDA is there

            if not torch.cuda.is_available():
                raise RuntimeError("--device cuda: no CUDA device is available to torch here")
        fmt = format or detect_format(data)
        ckpts = {m: str(c) for m, c in (("aps", aps_ckpt), ("events", event_ckpt)) if c is not None}
        networks = {m: Predictor(c, device, backend=backend, modality=m) for m, c in ckpts.items()}
        data_classes = class_set(labels_classes) if labels_classes else layout_class_set(fmt, sample_options)
        target = class_set(class_map_to) if class_map_to else None
        label_error = ""
        try:
            maps = {m: scoring_maps(p.class_set, data_classes, target, ckpts[m]) for m, p in networks.items()}
        except ValueError as exc:
            shared = None if class_map_to else common_set([p.class_set for p in networks.values()])
            if not unlabelled_ok or shared is None:
                raise
            label_error, target = str(exc), shared
            maps = {m: scoring_maps(p.class_set, target, target, ckpts[m]) for m, p in networks.items()}
        label_map = class_map(data_classes, target) if target is not None and data_classes != target \
            and not label_error else None
        options = dict(sample_options or {})
        if fmt == "bag":  # labels are checked in their own set as they are read
            options["classes"] = data_classes
        event_net = networks.get("events")
        samples = open_samples(data, fmt, None if event_net is None else event_net.event_input, options,
                               network=ckpts.get("events", "the event network"))
        return cls(Path(data), fmt, networks, ckpts, data_classes, target, maps, samples, label_error, label_map)
