"""Checkpoints: this project's self-describing format, and the EvDistill authors' plain state_dicts.

``save_checkpoint(path, model, metadata)`` writes atomically (temp file in the same folder,
fsync, ``os.replace``, see evdistill_ros.atomic) a torch file holding::

    {"format": "evdistill_ros.checkpoint", "format_version": 1,
     "state_dict": {name: tensor, ...}, "metadata": {...}}

``load_checkpoint(path, device="cpu", strict=True) -> (model, metadata)`` reads that format and
also a bare state_dict of the authors' ``DeepLab(backbone='resnet', output_stride=16,
num_classes=6)`` (keys optionally ``module.``-prefixed, optionally wrapped as
``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_state_dict": ...}`` or ``{"net": ...}``).
For those the architecture is read off the tensors (backbone depth, input channels, classes)
and the rest of the metadata is ``authors_metadata(kind)``: kind "aps" when the file name
contains "aps" (e.g. ddd17_aps_ckpt.pth), else "events". The model comes back in eval mode.

Metadata keys (those marked * are filled in by save_checkpoint from the model / environment):

    arch*, backbone*, in_channels*, num_classes*, output_stride*, options*  model.config: how to rebuild
    representation  "aps" for a frame network, or {"name": str, "params": {...}, "window_ns": int}
    input_size      {"height": int, "width": int}: the size the network was trained at (None: any)
    preprocessing   see evdistill_ros.models.preprocess (resize, scale, mean, std, clip, channels)
    classes         list of class names (default CLASS_NAMES)
    palette         list of [r, g, b] per class (default PALETTE)
    ignore_index    int (default 255)
    training        dict, free-form training configuration
    git_revision*   commit of this source tree ("<sha>-dirty" with local changes), None outside git
    created*        ISO-8601 UTC time of writing
    software*       {"evdistill_ros": version, "torch": version}
    source          "evdistill_ros" or "evdistill_authors"
"""
from __future__ import annotations

import datetime as _dt
import os
import subprocess
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..atomic import atomic_write
from ..classes import CLASS_NAMES, IGNORE_INDEX, PALETTE
from ..errors import CheckpointError
from ..events.spec import DEFAULT_EVENT_INPUT
from .factory import build_model

FORMAT = "evdistill_ros.checkpoint"
FORMAT_VERSION = 1
_MODEL_KEYS = ("arch", "backbone", "in_channels", "num_classes", "output_stride", "options")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")


def git_revision(path: str | os.PathLike | None = None) -> str | None:
    """Commit of the git tree holding ``path`` (default: this package), "-dirty" appended when it
    has uncommitted changes; None when git or the repository is not there."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def default_metadata() -> dict[str, Any]:
    """Class names, palette and ignore index of the project; merged under a caller's metadata."""
    return {"classes": list(CLASS_NAMES), "palette": PALETTE.tolist(), "ignore_index": IGNORE_INDEX}


def authors_metadata(kind: str = "events") -> dict[str, Any]:
    """Metadata of the EvDistill authors' released networks (ResNet-101 DeepLabv3+, 6 classes).

    They take 512x256 (W x H) RGB inputs in [0, 1] (PIL bicubic resize, ToTensor, no mean/std).
    "events": the event image of their test PNGs: per-polarity count maps in R and G, each scaled
    by its own max, B = 0 (representation evdistill_2ch, third channel zero-padded).
    "aps": the grey APS frame repeated to 3 channels.
    """
    if kind not in ("events", "aps"):
        raise CheckpointError(f"authors_metadata kind must be 'events' or 'aps', got {kind!r}")
    meta = default_metadata()
    meta.update(
        arch="deeplabv3plus", backbone="resnet101", in_channels=3, num_classes=6, output_stride=16, options={},
        input_size={"height": 256, "width": 512},
        preprocessing={"resize": "bicubic", "scale": "auto", "clip": [0.0, 1.0],
                       "channels": "pad" if kind == "events" else "repeat"},
        representation="aps" if kind == "aps" else DEFAULT_EVENT_INPUT.to_dict(),
        source="evdistill_authors", training={"paper": "EvDistill, CVPR 2021", "dataset": "DDD17"},
    )
    return meta


def save_checkpoint(path: str | os.PathLike, model: nn.Module, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s state_dict and metadata atomically to ``path``; returns the path.

    The model keys (arch, backbone, ...) come from ``model.config`` (set by build_model); a value
    given in ``metadata`` that contradicts it raises ValueError.
    """
    path = Path(path)
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise CheckpointError("save_checkpoint: model has no .config; build it with evdistill_ros.models.build_model")
    meta: dict[str, Any] = default_metadata()
    meta.update(dict(metadata or {}))
    for key in _MODEL_KEYS:
        if key in (metadata or {}) and _plain(metadata[key], key) != _plain(config[key], key):
            raise CheckpointError(f"save_checkpoint: metadata {key}={metadata[key]!r} contradicts the model's "
                                  f"{config[key]!r}")
        meta[key] = config[key]
    meta.update(git_revision=git_revision(), created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                software={"evdistill_ros": __version__, "torch": str(torch.__version__)})
    meta.setdefault("source", "evdistill_ros")
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "state_dict": state,
               "metadata": _plain(meta, "metadata")}
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)
    return path


def _plain(value: Any, where: str) -> Any:
    """Metadata as plain data (dict/list/str/number/bool/None) so it loads with weights_only=True."""
    if isinstance(value, np.generic):  # before the float check: np.float64 subclasses float
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CheckpointError(f"save_checkpoint: {where} is a {type(value).__name__}; metadata must be plain data")


def read_torch_file(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch's zip archive, or a legacy pickle
        kind = ("it looks like an ONNX model: name it .onnx" if head[:1] == b"\x08" else
                "neither torch's zip archive nor a pickle")
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({kind})")
    try:
        # weights_only: a checkpoint is tensors and plain data; never unpickle arbitrary objects.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds here
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        reason = next((ln for ln in lines if "Unpickler error" in ln), lines[0])
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {reason})") from None


def find_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            state = dict(obj)
        else:
            for key in _WRAPPER_KEYS:
                if isinstance(obj.get(key), Mapping):
                    return find_state_dict(obj[key], path)
            raise CheckpointError(f"{path} holds a dict without a state_dict (keys: {sorted(map(str, obj))[:8]})")
    else:
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture of a DeepLabv3+ state_dict in the authors' layout, read off its tensors."""
    try:
        conv1 = state["backbone.conv1.weight"]
        classifier = state["decoder.last_conv.8.weight"]
    except KeyError as exc:
        raise CheckpointError(f"state_dict is not a DeepLabv3+ ResNet (missing key {exc.args[0]!r})") from None
    blocks3 = {k.split(".")[2] for k in state if k.startswith("backbone.layer3.")}
    bottleneck = "backbone.layer1.0.conv3.weight" in state
    depth = {(True, 23): "resnet101", (True, 6): "resnet50", (False, 6): "resnet34", (False, 2): "resnet18"}
    backbone = depth.get((bottleneck, len(blocks3)))
    if backbone is None:
        raise CheckpointError(f"state_dict has a ResNet with {len(blocks3)} blocks in layer3; no known depth")
    return {"arch": "deeplabv3plus", "backbone": backbone, "in_channels": int(conv1.shape[1]),
            "num_classes": int(classifier.shape[0]), "output_stride": 16,
            "options": {"aspp_channels": int(state["aspp.conv1.weight"].shape[0])} if "aspp.conv1.weight" in state else {}}


def load_state_dict_checked(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True,
                            source: str = "checkpoint") -> None:
    """``model.load_state_dict`` with one-line errors naming the offending key and both shapes;
    a tensor holding NaN or +-inf is refused, naming it (a network that computes NaN segments
    everything as class 0 and says nothing).

    ``num_batches_tracked`` buffers missing from old checkpoints are tolerated (they only matter
    for momentum=None BatchNorm). With strict=False missing/unexpected keys are allowed, shape
    mismatches never.
    """
    own = model.state_dict()
    bad = nonfinite_tensor(state)
    if bad is not None:
        raise CheckpointError(f"{source}: tensor {bad!r} holds NaN or infinite values (a diverged or damaged "
                         "training); refused")
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{source} does not fit the model: {key!r} has shape {tuple(value.shape)} "
                             f"in the checkpoint but {tuple(own[key].shape)} in the model")
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(parts))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def nonfinite_tensor(tensors: Mapping[str, Any]) -> str | None:
    """The name of the first floating tensor holding NaN or +-inf, else None."""
    for key, value in tensors.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint without building its network (what a node needs to know
    about the input); for the authors' plain state_dicts, the metadata load_checkpoint gives."""
    path = Path(path)
    obj = read_torch_file(path)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        return _our_metadata(obj, path)
    meta = authors_metadata("aps" if "aps" in path.name.lower() else "events")
    meta.update(infer_config(find_state_dict(obj, path)))
    return meta


def _our_metadata(obj: Mapping[str, Any], path: Path) -> dict[str, Any]:
    if int(obj.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {obj['format_version']} is newer than this "
                         f"evdistill_ros reads ({FORMAT_VERSION})")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"{path}: checkpoint without metadata")
    missing = [k for k in _MODEL_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: checkpoint metadata lacks {missing}")
    return dict(meta)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    strict: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored at ``path``; returns (model in eval mode on ``device``, metadata)."""
    path = Path(path)
    obj = read_torch_file(path)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        meta = _our_metadata(obj, path)
        state = obj["state_dict"]
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: checkpoint without a state_dict")
    else:
        state = find_state_dict(obj, path)
        config = infer_config(state)
        meta = authors_metadata("aps" if "aps" in path.name.lower() else "events")
        meta.update(config)
    options = dict(meta.get("options") or {})
    model = build_model(meta["arch"], meta["backbone"], meta["in_channels"], meta["num_classes"],
                        meta["output_stride"], **options)
    if not any(k.startswith("reconstruction.") for k in state) and getattr(model, "reconstruction", None) is not None:
        model.reconstruction = None  # training-only head stripped from the file
    load_state_dict_checked(model, state, strict=strict, source=f"checkpoint {path}")
    return model.to(device).eval(), meta
