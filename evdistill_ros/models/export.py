"""ONNX export of a checkpoint, with its metadata inside, and the parity check that follows it.

    export_onnx(checkpoint, out, *, dynamic=True, opset=18, height=None, width=None) -> ExportReport
    check_onnx(reference_fn, onnx_bytes, meta, height, width, out) -> ExportReport   the check after writing
    read_onnx_metadata(path) -> dict      the checkpoint metadata an exported model carries
    quantize_int8(fp32_onnx, calibration, out) -> ExportReport   post-training static int8 (ONNX Runtime)
    parity(reference_fn, candidate_fn, inputs) -> (max |logit difference|, argmax agreement)

The metadata (architecture, event input, input size, preprocessing, classes, palette) is the
checkpoint's, stored as JSON under the ONNX model's metadata_props key "evdistill_ros.metadata",
so an exported model configures a node exactly as its checkpoint does (models.Predictor reads
.onnx files). The graph takes the preprocessed float32 tensor (B, C, H, W) named "input" and
gives logits "logits" (B, K, H, W); preprocessing and restoring stay in Python (models.preprocess),
one implementation for every backend. `dynamic=True` leaves batch, height and width free;
otherwise the input is fixed at the checkpoint's input size (or height x width).
"""
from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write
from .checkpoint import load_checkpoint

METADATA_KEY = "evdistill_ros.metadata"
DEFAULT_OPSET = 18  # the highest the TorchScript exporter of the pinned torch writes without warnings
EXAMPLE_HW = (200, 346)  # networks with no fixed input size are traced at the DAVIS346 / DDD17 crop


def require(module: str, purpose: str, package: str | None = None):
    """Import an optional package or raise one line naming what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(f"{purpose} needs the Python package {package or module}: "
                           f"pip install {package or module} (in the project venv)") from None


class _Logits(nn.Module):
    """The network as exported: logits only (DeepLabV3Plus may return dicts when asked)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out["logits"] if isinstance(out, dict) else out


def input_hw(meta: dict, height: int | None = None, width: int | None = None) -> tuple[int, int]:
    size = meta.get("input_size") or {}
    if height and width:
        return int(height), int(width)
    if size:
        return int(size["height"]), int(size["width"])
    return EXAMPLE_HW


def onnx_bytes(model: nn.Module, meta: dict, *, dynamic: bool = True, opset: int = DEFAULT_OPSET,
               height: int | None = None, width: int | None = None) -> bytes:
    """The serialized ONNX model of `model` with `meta` embedded."""
    onnx = require("onnx", "ONNX export")
    h, w = input_hw(meta, height, width)
    example = torch.zeros(1, int(meta["in_channels"]), h, w)
    buf = io.BytesIO()
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    wrapped = _Logits(model.cpu()).eval()  # eval before export: the exporter restores the wrapper's mode after it
    with torch.no_grad(), warnings.catch_warnings():
        # Python branches on tensor shapes (the networks' input checks, transformers' attention in a
        # teacher card) become constants in the trace, which warns about each on every export: nothing
        # a user can act on. `evdistill export` and the auto backend compare the written model with
        # torch on inputs anyway (argmax agreement)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(wrapped, (example,), buf, input_names=["input"],
                          output_names=["logits"], opset_version=opset, dynamo=False,
                          dynamic_axes=axes if dynamic else None)
    proto = onnx.load_from_string(buf.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps({**meta, "onnx": {"dynamic": dynamic, "opset": opset,
                                                                          "traced_hw": [h, w]}})
    return proto.SerializeToString()


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint metadata stored in an exported model; ValueError when it has none."""
    onnx = require("onnx", "reading an .onnx model")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own kinds on a broken file
        raise ValueError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            bad = nonfinite_initializer(proto)
            if bad is not None:
                raise ValueError(f"{path}: initializer {bad!r} holds NaN or infinite values; refused")
            return json.loads(entry.value)
    raise ValueError(f"{path}: an ONNX model without evdistill_ros metadata (export it with `evdistill export`)")


def nonfinite_initializer(proto: Any) -> str | None:
    """The name of the first floating initializer of an ONNX model holding NaN or +-inf, else None."""
    from onnx import numpy_helper

    for init in proto.graph.initializer:
        if init.data_location == 1:  # EXTERNAL: not loaded here
            continue
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            return init.name
    return None


def parity(reference: Callable[[np.ndarray], np.ndarray], candidate: Callable[[np.ndarray], np.ndarray],
           inputs: Sequence[np.ndarray]) -> tuple[float, float]:
    """(largest |logit difference|, fraction of pixels whose argmax agrees) over `inputs`; (inf, 0)
    when either side gives a non-finite logit."""
    diff, agree, total = 0.0, 0, 0
    for x in inputs:
        a, b = reference(x), candidate(x)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            return float("inf"), 0.0  # NaN compares equal nowhere: non-finite logits never pass the check
        diff = max(diff, float(np.abs(a - b).max()))
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        total += a.shape[0] * a.shape[2] * a.shape[3]
    return diff, agree / max(total, 1)


@dataclass
class ExportReport:
    path: Path
    max_logit_diff: float
    argmax_agreement: float
    input_shape: tuple[int, ...]
    compared: str = "onnxruntime vs torch"
    inputs: str = "3 random inputs"

    def summary(self) -> str:
        return (f"{self.path}: largest logit difference {self.max_logit_diff:.2e}, argmax agreement "
                f"{100 * self.argmax_agreement:.3f}% of pixels ({self.compared}, {self.inputs} "
                f"{'x'.join(map(str, self.input_shape))})")


_CHECK_SEEDS = (0, 1, 2)


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, *, dynamic: bool = True,
                opset: int = DEFAULT_OPSET, height: int | None = None, width: int | None = None) -> ExportReport:
    """Export a checkpoint (ours or the authors') to ONNX, then run both on random inputs
    (a teacher card: models.teacher_card.export_card)."""
    model, meta = load_checkpoint(checkpoint)
    data = onnx_bytes(model, meta, dynamic=dynamic, opset=opset, height=height, width=width)
    with atomic_write(out, "wb") as f:
        f.write(data)

    def torch_fn(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return _Logits(model)(torch.from_numpy(x)).numpy()

    return check_onnx(torch_fn, data, meta, height, width, out)


def check_onnx(reference: Callable[[np.ndarray], np.ndarray], data: bytes, meta: dict, height: int | None,
           width: int | None, out: str | os.PathLike) -> ExportReport:
    """Run the written model beside its reference on random inputs of the network's size."""
    ort = require("onnxruntime", "the check after export")
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    h, w = input_hw(meta, height, width)
    shape = (1, int(meta["in_channels"]), h, w)
    inputs = [np.random.default_rng(s).standard_normal(shape).astype(np.float32) for s in _CHECK_SEEDS]
    diff, agree = parity(reference, lambda x: session.run(None, {name: x})[0], inputs)
    return ExportReport(Path(out), diff, agree, shape)


def quantize_int8(fp32_onnx: bytes, calibration: Sequence[np.ndarray], out: str | os.PathLike,
                  per_channel: bool = True) -> ExportReport:
    """Post-training static int8 quantisation (ONNX Runtime, QDQ, per-channel weights, MinMax
    activations) calibrated on `calibration` (preprocessed (1, C, H, W) float32 inputs, e.g. a
    few hundred training windows); the metadata is carried over and marked `"int8": true`.
    The report compares the int8 model with the fp32 one on the calibration inputs."""
    onnx = require("onnx", "int8 quantisation")
    ort = require("onnxruntime", "int8 quantisation")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("int8 quantisation needs calibration inputs (training windows)")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calibration)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": np.ascontiguousarray(x, np.float32)}

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, q = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32_onnx)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        proto = onnx.load(str(q))
    meta = json.loads(next(e.value for e in onnx.load_from_string(fp32_onnx).metadata_props if e.key == METADATA_KEY))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps({**meta, "onnx": {**meta.get("onnx", {}), "int8": True,
                                                                          "calibration_inputs": len(calibration)}})
    data = proto.SerializeToString()
    with atomic_write(out, "wb") as f:
        f.write(data)
    ref = ort.InferenceSession(fp32_onnx, providers=["CPUExecutionProvider"])
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    diff, agree = parity(lambda x: ref.run(None, {"input": x})[0], lambda x: got.run(None, {"input": x})[0],
                         [np.asarray(x, np.float32) for x in calibration[:20]])
    return ExportReport(Path(out), diff, agree, tuple(calibration[0].shape), "int8 vs fp32 ONNX",
                        f"{min(20, len(calibration))} calibration inputs")
