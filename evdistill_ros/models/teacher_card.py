"""Teacher cards: image segmentation networks this package did not train (ONNX, TorchScript,
Hugging Face folders), described by a small YAML file, and one loader for every image network.

A card (relative paths are relative to the card's folder)::

    path: segformer-b0-cityscapes.onnx   # .onnx, TorchScript (.pt / .pth / .ts / .torchscript), or a
                                         # Hugging Face model folder (config.json + weights)
    classes: cityscapes                  # a class set name (cityscapes = dsec19), a class-set YAML,
                                         # or omitted for a Hugging Face folder (config.json id2label)
    frame: rgb                           # rgb | gray: what the network takes
    mean: [123.675, 116.28, 103.53]      # per channel (or one value), on 0-255 pixel values
    std: [58.395, 57.12, 57.375]
    input_size: [512, 1024]              # optional [height, width]: frames are resized to it

The network takes (B, C, H, W) float32 ((pixel - mean) / std) and returns logits (B, K, h, w)
at any resolution (a tuple's first element, a dict's "logits", or a Hugging Face output's
`.logits`); callers resize them to the frame. A card becomes checkpoint-style metadata
(`card.metadata()`: representation "aps", input size, preprocessing, class set), so everything
that takes this package's APS checkpoints (Predictor, evaluation, distillation, the node) runs a
card network through the same preprocessing code: an RGB card on a grey camera gets the grey
frame repeated to three channels (what `frames.to_frame(image, "rgb")` gives a grey image).

    read_teacher_card(path) -> TeacherCard           one-line ValueError naming the field
    load_image_network(path, device="cpu") -> (nn.Module in eval mode, metadata)
        path: a .yaml card, an .onnx written by `evdistill export` (its metadata inside), or a
        checkpoint of this package / the EvDistill authors (models.load_checkpoint)
    read_image_network_metadata(path) -> metadata    the same without building the network
    is_card(path) -> bool
    content_hash(card_path) -> str                   sha256 of the card and its network's files
    export_card(card, out, dynamic=True, ...) -> ExportReport   the card's network as an .onnx with the
        card inside (`evdistill export CARD.yaml --out teacher.onnx`): it then needs no card

Hugging Face folders load offline with the installed `transformers` (local files only, never
`trust_remote_code`, safetensors preferred); semantic-segmentation heads whose output has
`.logits` (SegFormer, UperNet, DPT, BEiT, MobileViT ...) work. TorchScript files are TorchScript
programs (no Python pickle), loaded with torch.jit.load.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..classes import CLASS_SETS, ClassSet, class_set, class_set_of
from ..errors import CheckpointError, ConfigError
from ..frames import FRAME_MODES
from ..atomic import atomic_write
from .checkpoint import load_checkpoint, nonfinite_tensor, read_metadata
from .export import (DEFAULT_OPSET, METADATA_KEY, ExportReport, check_onnx, nonfinite_initializer, onnx_bytes,
                     read_onnx_metadata, require)

CARD_SUFFIXES = (".yaml", ".yml")
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")
CARD_FIELDS = ("path", "classes", "frame", "mean", "std", "input_size")
MAX_CARD_BYTES = 64 * 1024  # a card is a few lines; anything larger is not a card


def is_card(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in CARD_SUFFIXES


@dataclass(frozen=True)
class TeacherCard:
    """What a card says, checked; `kind` is "onnx" | "torchscript" | "huggingface"."""

    card_path: Path
    path: Path
    kind: str
    classes: ClassSet
    frame: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int] | None = None

    @property
    def in_channels(self) -> int:
        return 3 if self.frame == "rgb" else 1

    def metadata(self) -> dict[str, Any]:
        """Checkpoint-style metadata of the card's network (what models.preprocess reads)."""
        return {
            "arch": f"card:{self.kind}", "backbone": None, "in_channels": self.in_channels,
            "num_classes": self.classes.num_classes, "output_stride": None, "options": {},
            "representation": "aps",
            "input_size": None if self.input_size is None else {"height": self.input_size[0],
                                                                "width": self.input_size[1]},
            # mean/std are given on 0-255 values; the pipeline scales pixels to [0, 1] first
            "preprocessing": {"frame": self.frame, "resize": "bilinear", "scale": "auto",
                              "channels": "repeat" if self.frame == "rgb" else "exact",
                              "mean": [m / 255.0 for m in self.mean], "std": [s / 255.0 for s in self.std]},
            **self.classes.to_dict(),
            "source": "teacher_card",
            "teacher_card": {"card": str(self.card_path), "path": str(self.path), "kind": self.kind},
        }


def _fail(card: Path, field_name: str, why: str) -> ConfigError:
    return ConfigError(f"teacher card {card}: {field_name}: {why}")


def _vector(card: Path, name: str, value: Any, channels: int) -> tuple[float, ...]:
    vals = value if isinstance(value, (list, tuple)) else [value]
    try:
        out = tuple(float(v) for v in vals)
    except (TypeError, ValueError):
        raise _fail(card, name, f"numbers expected, got {value!r}") from None
    if len(out) not in (1, channels) or not all(np.isfinite(out)):
        raise _fail(card, name, f"one or {channels} finite numbers expected, got {value!r}")
    if name == "std" and any(v <= 0 for v in out):
        raise _fail(card, name, f"must be > 0, got {value!r}")
    return out


def _kind(card: Path, path: Path) -> str:
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise _fail(card, "path", f"{path} is a folder without config.json (not a Hugging Face model folder)")
        return "huggingface"
    if not path.is_file():
        raise _fail(card, "path", f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in TORCHSCRIPT_SUFFIXES:
        return "torchscript"
    raise _fail(card, "path", f"{path.name}: expected an .onnx file, a TorchScript file "
                              f"({', '.join(TORCHSCRIPT_SUFFIXES)}) or a Hugging Face model folder")


def _hf_weights(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))


def content_hash(card_path: str | os.PathLike) -> str:
    """sha256 over a card and its network's files: what identifies the teacher's outputs (the key
    of cached teacher outputs). Hashed once per file version (path, size, mtime) in a process."""
    card = read_teacher_card(card_path)
    files = [card.card_path] + (_hf_weights(card.path) if card.kind == "huggingface" else [card.path])
    stats = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _hash_files(stats)


@functools.lru_cache(maxsize=16)
def _hash_files(stats: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for name, _, _ in stats:
        f = Path(name)
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def _hf_classes(card: Path, folder: Path) -> ClassSet:
    try:
        config = json.loads((folder / "config.json").read_text())
        id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    except (OSError, ValueError, AttributeError) as exc:
        raise _fail(card, "classes", f"no class names in {folder / 'config.json'} ({exc})") from None
    if not id2label or sorted(id2label) != list(range(len(id2label))):
        raise _fail(card, "classes", f"{folder / 'config.json'} has no usable id2label: name the class set")
    names = tuple(id2label[i] for i in range(len(id2label)))
    for cs in CLASS_SETS.values():  # Cityscapes' 19 train ids are dsec19: keep the name (class maps)
        if tuple(n.lower() for n in cs.names) == tuple(n.lower() for n in names):
            return cs
    return ClassSet.from_dict({"classes": list(names)}, name=folder.name)


def read_teacher_card(card: str | os.PathLike) -> TeacherCard:
    """Parse and check a card; every problem is one ValueError line naming the field."""
    import yaml

    card = Path(card)
    if not card.is_file():
        raise FileNotFoundError(f"teacher card not found: {card}")
    text = card.read_bytes()
    if len(text) > MAX_CARD_BYTES:
        raise ConfigError(f"teacher card {card}: {len(text)} bytes is not a card (at most {MAX_CARD_BYTES})")
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"teacher card {card}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"teacher card {card}: expected a mapping with {', '.join(CARD_FIELDS)}")
    unknown = sorted(set(map(str, d)) - set(CARD_FIELDS))
    if unknown:
        raise _fail(card, unknown[0], f"unknown field (fields: {', '.join(CARD_FIELDS)})")
    for name in ("path", "frame", "mean", "std"):
        if d.get(name) is None:
            raise _fail(card, name, "missing")
    path = Path(str(d["path"])).expanduser()
    path = path if path.is_absolute() else card.parent / path
    kind = _kind(card, path)
    frame = str(d["frame"])
    if frame not in FRAME_MODES:
        raise _fail(card, "frame", f"must be one of {', '.join(FRAME_MODES)}, got {frame!r}")
    channels = 3 if frame == "rgb" else 1
    if d.get("classes") is None:
        if kind != "huggingface":
            raise _fail(card, "classes", "missing (a class set name such as cityscapes, or a class-set YAML)")
        classes = _hf_classes(card, path)
    else:
        name = str(d["classes"])
        if Path(name).suffix.lower() in CARD_SUFFIXES and not Path(name).is_absolute():
            name = str(card.parent / name)
        try:
            classes = class_set(name)
        except ValueError as exc:
            raise _fail(card, "classes", str(exc)) from None
    size = d.get("input_size")
    if size is not None:
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and 8 <= v <= 8192
                                                                         for v in size)):
            raise _fail(card, "input_size", f"[height, width] with integers in 8..8192 expected, got {size!r}")
        size = (int(size[0]), int(size[1]))
    return TeacherCard(card, path, kind, classes, frame, _vector(card, "mean", d["mean"], channels),
                       _vector(card, "std", d["std"], channels), size)


# --------------------------------------------------------------------------------------------
# the networks


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping) and "logits" in out:
        return out["logits"]
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ValueError(f"the network returned a {type(out).__name__}, not logits")


class CardNetwork(nn.Module):
    """A card's network as a module: (B, C, H, W) preprocessed input -> logits (B, K, h, w).

    `forward(x, return_features=True)` gives {"logits": ..., "logits_lowres": ...} (both the
    network's own output), the dict this package's DeepLab networks give, so code written for
    those runs a card network too; it has no intermediate features."""

    def __init__(self, card: TeacherCard, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.card = card
        self.in_channels = card.in_channels
        self.num_classes = card.classes.num_classes
        self._session = None
        self.net: nn.Module | None = None
        # an empty parameter on the network's device: code that asks a module for its device works
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        if card.kind == "onnx":
            ort = require("onnxruntime", "an ONNX teacher")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            providers = ["CPUExecutionProvider"]
            if torch.device(device).type == "cuda":
                providers = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()] + providers
            try:
                self._session = ort.InferenceSession(str(card.path), sess_options=opts, providers=providers)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own kinds on a bad file
                raise CheckpointError(f"teacher card {card.card_path}: path: {card.path} is not a loadable ONNX model "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
            self._input_name = self._session.get_inputs()[0].name
        elif card.kind == "torchscript":
            try:
                self.net = torch.jit.load(str(card.path), map_location="cpu")
            except Exception as exc:  # noqa: BLE001 - a pickle or a broken archive is refused here
                raise CheckpointError(f"teacher card {card.card_path}: path: {card.path} is not a TorchScript file "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        else:
            transformers = require("transformers", "a Hugging Face teacher folder")
            kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
            if any(card.path.glob("*.safetensors")):
                kwargs["use_safetensors"] = True
            try:
                self.net = transformers.AutoModelForSemanticSegmentation.from_pretrained(str(card.path), **kwargs)
            except Exception as exc:  # noqa: BLE001 - transformers raises many kinds here
                raise CheckpointError(f"teacher card {card.card_path}: path: {card.path} is not a loadable Hugging "
                                      f"Face semantic-segmentation folder ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0][:200]})") from None
        if self.net is not None:
            self.net.eval()
            for p in self.net.parameters():  # (ScriptModules have no requires_grad_)
                p.requires_grad_(False)
            bad = nonfinite_tensor(dict(self.net.state_dict()))
        else:
            onnx = require("onnx", "an ONNX teacher")
            bad = nonfinite_initializer(onnx.load(str(card.path), load_external_data=False))
        if bad is not None:
            raise CheckpointError(f"teacher card {card.card_path}: path: {card.path}: {bad!r} holds NaN or infinite "
                             "values; refused")
        self.to(device)
        self.eval()

    def train(self, mode: bool = True) -> "CardNetwork":
        super().train(False)  # a teacher never trains: dropout and BatchNorm stay in eval mode
        return self

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self._session is not None:
            out = self._session.run(None, {self._input_name: x.detach().float().cpu().numpy()})[0]
            return torch.from_numpy(np.asarray(out, np.float32)).to(x.device)
        if self.card.kind == "huggingface":
            return _logits(self.net(pixel_values=x)).float()
        return _logits(self.net(x)).float()

    def forward(self, x: torch.Tensor, return_features: bool = False):
        with torch.no_grad():
            logits = self._run(x)
        if logits.dim() != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(f"teacher card {self.card.card_path}: the network gave {tuple(logits.shape)}, expected "
                             f"(B, {self.num_classes}, h, w) logits for {self.card.classes.describe()}")
        if return_features:
            return {"logits": logits, "logits_lowres": logits}
        return logits


def read_image_network_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Metadata of a card, an exported .onnx or a checkpoint, without building the network."""
    path = Path(path)
    if is_card(path):
        return read_teacher_card(path).metadata()
    if path.suffix.lower() == ".onnx":
        return _onnx_metadata(path)
    return read_metadata(path)


def _onnx_metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"network not found: {path}")
    try:
        return read_onnx_metadata(path)
    except ValueError as exc:
        if "without evdistill_ros metadata" in str(exc):
            raise CheckpointError(f"{path}: an ONNX model without evdistill_ros metadata: write a teacher card for it "
                             "(YAML: path, classes, frame, mean, std; docs/real_cameras.md)") from None
        raise


def load_image_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(network in eval mode on `device`, metadata) for a card or a checkpoint. An .onnx from
    `evdistill export` runs through ONNX Runtime as a module (as a card's ONNX network does)."""
    path = Path(path)
    if is_card(path):
        card = read_teacher_card(path)
        return CardNetwork(card, device), card.metadata()
    if path.suffix.lower() == ".onnx":
        meta = _onnx_metadata(path)
        # the graph takes the preprocessed input (its metadata says how, models.preprocess): of this
        # card only the path, kind and classes are used, to run the graph and check its output
        card = TeacherCard(path, path, "onnx", class_set_of(meta), (meta.get("preprocessing") or {}).get(
            "frame") or "gray", (0.0,), (1.0,), None)
        net = CardNetwork(card, device)
        net.in_channels = int(meta["in_channels"])
        return net, meta
    return load_checkpoint(path, device=device)


def export_card(card_path: str | os.PathLike, out: str | os.PathLike, *, dynamic: bool = True,
                opset: int = DEFAULT_OPSET, height: int | None = None, width: int | None = None) -> ExportReport:
    """Write a card's network as ONNX with the card's metadata inside, then check it against the
    card's network on random inputs. An ONNX card keeps its graph (the metadata is added)."""
    import json

    net, meta = load_image_network(card_path)
    if net.card.kind == "onnx":
        onnx = require("onnx", "ONNX export")
        proto = onnx.load(str(net.card.path))
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps({**meta, "onnx": {"from_card": True}})
        data = proto.SerializeToString()
    else:
        data = onnx_bytes(net, meta, dynamic=dynamic and meta["input_size"] is None, opset=opset, height=height,
                          width=width)
    with atomic_write(out, "wb") as f:
        f.write(data)
    return check_onnx(lambda x: net(torch.from_numpy(x)).numpy(), data, meta, height, width, out)
