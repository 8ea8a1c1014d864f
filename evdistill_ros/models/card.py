"""What a network file says about its network, as one frozen type.

A checkpoint, an exported .onnx and a teacher card all carry metadata: how to rebuild the network,
what it reads (an APS frame or an `EventInput`), at what size, how its input is prepared, which
classes it predicts and how it was trained. `NetworkCard` is that metadata typed; the plain dict
exists only at the file boundary (`NetworkCard.from_dict` when a file is read, `to_dict` when one is
written), as `EventInput` does for the event input. Everything above `models/` takes the card.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from ..classes import ClassSet, class_set_of
from ..errors import CheckpointError
from ..events.spec import EventInput

# keys the card holds as fields; anything else a file carries (git_revision, created, software,
# teacher_card, onnx, ...) is kept verbatim in `extra` so a card written back loses nothing
_FIELD_KEYS = ("arch", "backbone", "in_channels", "num_classes", "output_stride", "options", "representation",
               "input_size", "preprocessing", "class_set", "classes", "palette", "ignore_index", "source", "training")


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class NetworkCard:
    """A network's metadata. `event_input` None: the network reads APS frames."""

    arch: str
    in_channels: int
    num_classes: int
    backbone: str | None = None
    output_stride: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    event_input: EventInput | None = None
    input_size: tuple[int, int] | None = None  # (height, width) it was trained at; None: any
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    classes: ClassSet = field(default_factory=lambda: class_set_of({}))
    source: str = "evdistill_ros"
    training: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    # where the card was read from (messages name the file); not part of the file's metadata
    path: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("options", "preprocessing", "training", "extra"):
            object.__setattr__(self, name, _frozen(getattr(self, name) or {}))
        if self.classes.num_classes != self.num_classes:
            raise CheckpointError(f"{self.name} predicts {self.num_classes} classes but names "
                                  f"{self.classes.describe()} in its metadata")

    @property
    def is_event_network(self) -> bool:
        return self.event_input is not None

    @property
    def modality(self) -> str:
        """"events" or "aps": what the network reads."""
        return "events" if self.is_event_network else "aps"

    @property
    def name(self) -> str:
        """How messages name the network: its file, else its backbone."""
        return str(self.path or self.backbone or self.arch or "network")

    @property
    def is_foreign(self) -> bool:
        """A network trained elsewhere (a teacher card, or an .onnx made from one)."""
        return self.source == "teacher_card" or self.arch.startswith("card:")

    def replace(self, **changes: Any) -> "NetworkCard":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The metadata form written into checkpoints and .onnx files (models.checkpoint's keys)."""
        out = _plain(self.extra)
        out.update(arch=self.arch, backbone=self.backbone, in_channels=self.in_channels,
                   num_classes=self.num_classes, output_stride=self.output_stride, options=_plain(self.options),
                   representation=self.event_input.to_dict() if self.event_input is not None else "aps",
                   input_size=None if self.input_size is None else {"height": self.input_size[0],
                                                                   "width": self.input_size[1]},
                   preprocessing=_plain(self.preprocessing), source=self.source, training=_plain(self.training))
        out.update(self.classes.to_dict())
        return out

    @classmethod
    def from_dict(cls, meta: Mapping[str, Any], path: str | None = None) -> "NetworkCard":
        """The card of a file's metadata; CheckpointError naming the file and the field otherwise."""
        where = path or "network metadata"
        if not isinstance(meta, Mapping):
            raise CheckpointError(f"{where}: metadata must be a mapping, got {type(meta).__name__}")
        missing = [k for k in ("arch", "in_channels", "num_classes") if meta.get(k) is None]
        if missing:
            raise CheckpointError(f"{where}: metadata lacks {missing}")
        rep = meta.get("representation", "aps")
        try:
            event_input = None if rep in (None, "aps") else EventInput.from_dict(rep)
        except ValueError as exc:
            raise CheckpointError(f"{where}: representation: {exc}") from None
        size = meta.get("input_size")
        try:
            if isinstance(size, Mapping):
                input_size = (int(size["height"]), int(size["width"]))
            elif isinstance(size, (list, tuple)) and len(size) == 2:
                input_size = (int(size[0]), int(size[1]))
            elif not size:
                input_size = None
            else:
                raise ValueError(size)
            classes = class_set_of(meta)
            return cls(arch=str(meta["arch"]), in_channels=int(meta["in_channels"]),
                       num_classes=int(meta["num_classes"]), backbone=meta.get("backbone"),
                       output_stride=None if meta.get("output_stride") is None else int(meta["output_stride"]),
                       options=meta.get("options") or {}, event_input=event_input, input_size=input_size,
                       preprocessing=meta.get("preprocessing") or {}, classes=classes,
                       source=str(meta.get("source") or "evdistill_ros"), training=meta.get("training") or {},
                       extra={k: v for k, v in meta.items() if k not in _FIELD_KEYS and not k.startswith("_")},
                       path=path)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{where}: metadata does not describe a network ({type(exc).__name__}: "
                                  f"{exc})") from None
