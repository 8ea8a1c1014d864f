"""Inference backends: one network, run by torch or by an ONNX runtime, chosen per node.

    BACKENDS = ("torch", "torch-compile", "onnxruntime", "openvino", "auto")
    create_backend(name, model, meta, device, fp16=False, onnx_model=None) -> Backend
    Backend.run(x) -> logits      x: the preprocessed float32 tensor (B, C, H, W) from
                                  models.preprocess; logits: float32 torch tensor (B, K, H, W)

torch          eager, channels_last on CUDA and on the CPU (faster on every network measured,
               bench/bench_models.py), fp16 on CUDA when asked
torch-compile  torch.compile of the same (first calls compile: slow start)
onnxruntime    ONNX Runtime: CUDA (and TensorRT) execution providers when the device is CUDA
               and they are installed, else the CPU provider with torch's thread count
openvino       OpenVINO on the CPU
auto           (the default) times every backend that loads here for a small fixed budget and
               keeps the fastest whose argmax agrees with torch on >= 99.5 % of the pixels
               (AUTO_AGREEMENT): at load for a network with a fixed input size (checked again on
               its first real input), else on its first real input (a window, a frame, a batch);
               the table is logged and kept (`describe`). torch-compile is left
               out of auto (its first call compiles for tens of seconds on a small CPU: ask for
               it by name); an int8 model is one the user exports and calibrates (models.export)

Preprocessing and restoring are not part of a backend: they stay in models.preprocess, one
implementation whatever runs the network. A missing optional package is a one-line
RuntimeError naming what to install; torch always works.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .export import onnx_bytes, require

BACKENDS = ("torch", "torch-compile", "onnxruntime", "openvino", "auto")
AUTO_AGREEMENT = 0.995


class Backend:
    name = "?"
    device = torch.device("cpu")

    def run(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, {self.device})"


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device, fp16: bool = False, compile: bool = False,
                 channels_last: bool = True):
        self.device = device
        self.fp16 = bool(fp16 and device.type == "cuda")  # fp16 only pays off (and is safe) on CUDA
        # channels_last=False runs a module that is still being trained (validation) as it is: the
        # conversion would change its weights' layout in place
        self.channels_last = channels_last
        model = model.to(device).eval()
        if self.fp16:
            model = model.half()
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        if compile:
            self.name = "torch-compile"
            self.model = torch.compile(self.model)

    @torch.inference_mode()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.fp16:
            x = x.half()
        out = self.model(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)
        out = out["logits"] if isinstance(out, dict) else out
        return out.float()


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, onnx_model: bytes, device: torch.device):
        ort = require("onnxruntime", "backend onnxruntime")
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            providers = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available] + providers
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        # no busy-waiting between runs: spinning threads hold the cores that pre- and post-processing and
        # a robot's other nodes need. Measured once (2 threads, LR-ASPP x1.0 at 120x160): spinning runs the
        # network 1.3-1.5x faster but, at 20 Hz, costs 28 ms of CPU per 2.5 ms run
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_model, sess_options=opts, providers=providers)
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name  # "input" when exported here; a card's graph may differ
        self.device = device if self.providers[0] != "CPUExecutionProvider" else torch.device("cpu")

    def run(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().numpy()})[0]
        return torch.from_numpy(out)


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, onnx_model: bytes):
        ov = require("openvino", "backend openvino")
        core = ov.Core()
        # f32 inference precision: OpenVINO's CPU default may pick bf16 where the CPU has it (98.5 % argmax
        # agreement with torch measured on random inputs, against >= 99.9 % in f32)
        self.compiled = core.compile_model(core.read_model(model=onnx_model), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def run(self, x: torch.Tensor) -> torch.Tensor:
        out = self.compiled([x.detach().cpu().numpy()])[self.compiled.output(0)]
        return torch.from_numpy(np.asarray(out))


def create_backend(name: str, model: nn.Module | None, meta: dict, device: torch.device, fp16: bool = False,
                   onnx_model: bytes | None = None, log: Callable[[str], None] = lambda s: None) -> Backend:
    """The backend called `name` for a network (`model`, or only `onnx_model` for an .onnx file)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    if name == "auto":
        return AutoBackend(model, meta, device, fp16, onnx_model, log)
    if name in ("torch", "torch-compile"):
        if model is None:
            raise ValueError(f"backend {name} needs a torch checkpoint; an .onnx model runs with onnxruntime or openvino")
        return TorchBackend(model, device, fp16, compile=name == "torch-compile")
    if onnx_model is None:
        onnx_model = onnx_bytes(model, meta)
    if name == "onnxruntime":
        return OnnxRuntimeBackend(onnx_model, device)
    return OpenVinoBackend(onnx_model)


# What auto may spend timing one backend (after one warm-up call): enough runs for a stable
# minimum on a 2-core machine, bounded so that a node starts within a second or two.
AUTO_RUNS, AUTO_BUDGET_S = 7, 0.5


def _time_ms(backend: Backend, x: torch.Tensor) -> float:
    """The fastest of up to AUTO_RUNS calls (within AUTO_BUDGET_S) after a warm-up, ms."""
    backend.run(x)  # warm-up (allocations, lazy init)
    best, spent = float("inf"), 0.0
    for _ in range(AUTO_RUNS):
        t0 = time.perf_counter()
        backend.run(x)
        if backend.device.type == "cuda":
            torch.cuda.synchronize()
        took = time.perf_counter() - t0
        best, spent = min(best, took), spent + took
        if spent > AUTO_BUDGET_S:
            break
    return best * 1e3


class AutoBackend(Backend):
    """`auto`: loads every backend it can and keeps the fastest that agrees with the reference
    (torch; for an .onnx file without torch weights, onnxruntime) on >= AUTO_AGREEMENT of the
    argmax pixels. A network with a fixed input size is timed when it loads (on a synthetic input
    of that size: a node's first windows then find it ready) and the choice is checked on the first
    real input it runs (the reference is kept where the choice disagrees there); a network that
    takes any size is timed and checked on its first real input."""

    name = "auto"

    def __init__(self, model: nn.Module | None, meta: dict, device: torch.device, fp16: bool = False,
                 onnx_model: bytes | None = None, log: Callable[[str], None] = lambda s: None):
        self.log = log
        self.device = device
        self.candidates: dict[str, Backend | None] = {}
        if onnx_model is None:
            try:  # one export for every ONNX backend
                onnx_model = onnx_bytes(model, meta)
            except Exception as exc:  # noqa: BLE001 - no exporter here: torch only
                log(f"auto: no ONNX export ({exc})")
        for name in ("torch", "onnxruntime", "openvino"):
            if (model is None and name == "torch") or (onnx_model is None and name != "torch"):
                continue
            try:
                self.candidates[name] = create_backend(name, model, meta, device, fp16, onnx_model)
            except Exception as exc:  # noqa: BLE001 - a backend that cannot load here is skipped, said why
                log(f"auto: {name} unavailable ({exc})")
        if not self.candidates:
            raise RuntimeError("auto: no backend could load this network")
        self.reference = next(iter(self.candidates.values()))
        self.chosen: Backend | None = None
        self.checked = False  # the choice checked on a real input
        self.table: dict[str, dict[str, float]] = {}
        size = meta.get("input_size") or {}
        if size:  # timed now, on the input size the network always gets
            x = torch.from_numpy(np.random.default_rng(0).random(
                (1, int(meta["in_channels"]), int(size["height"]), int(size["width"])), dtype=np.float32))
            self._choose(x, "a synthetic")

    def run(self, x: torch.Tensor) -> torch.Tensor:
        if self.chosen is None:
            self._choose(x, "the first real")
            self._release()
        elif not self.checked and self.chosen is self.reference:  # the reference won: it agrees with itself
            self.table[self.name]["agreement_real_input"] = 1.0
            self._release()
        elif not self.checked:
            got = self.chosen.run(x)
            agree = _agreement(got, self.reference.run(x))
            self.table[self.name]["agreement_real_input"] = round(agree, 5)
            if agree < AUTO_AGREEMENT:
                self.log(f"auto: {self.name} agrees with {self.reference.name} on only {100 * agree:.2f}% of the "
                         f"first real input's argmax: {self.reference.name} kept")
                self._keep(self.reference)
            self._release()
            if agree >= AUTO_AGREEMENT:
                return got
        return self.chosen.run(x)

    def _release(self) -> None:
        """Checked on a real input: the other backends' sessions and weights are not kept."""
        self.checked = True
        self.reference = self.chosen
        self.candidates = {k: (v if v is self.chosen else None) for k, v in self.candidates.items()}

    def _choose(self, x: torch.Tensor, which: str) -> None:
        want = self.reference.run(x)
        for name, backend in self.candidates.items():
            agree = _agreement(backend.run(x), want)
            self.table[name] = {"agreement": round(agree, 5)}
            if agree >= AUTO_AGREEMENT:
                self.table[name]["ms"] = round(_time_ms(backend, x), 3)
        timed = {k: v["ms"] for k, v in self.table.items() if "ms" in v}
        best = min(timed, key=timed.get)
        self.log(f"auto on {which} {'x'.join(map(str, x.shape))} input: " + ", ".join(
            f"{k} {v['ms']:.1f} ms" if "ms" in v else f"{k} refused ({100 * v['agreement']:.2f}% of argmax "
            f"agree < {100 * AUTO_AGREEMENT:.1f}%)" for k, v in self.table.items()) + f" -> {best}")
        self._keep(self.candidates[best])

    def _keep(self, backend: Backend) -> None:
        self.chosen, self.name, self.device = backend, backend.name, backend.device


def _agreement(got: torch.Tensor, want: torch.Tensor) -> float:
    """Fraction of pixels whose argmax agrees (0 when `got` holds a non-finite logit)."""
    if not bool(torch.isfinite(got).all()):
        return 0.0
    return float((got.argmax(1).cpu() == want.argmax(1).cpu()).float().mean())


class BackendModule(nn.Module):
    """A Backend as an nn.Module (eval mode, a parameter on its device), for code written
    against modules: evaluation batches through it unchanged."""

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend
        self.anchor = nn.Parameter(torch.zeros(0, device=backend.device), requires_grad=False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backend.run(x)


def describe(backend: Backend) -> dict[str, Any]:
    """The backend's name and device; for `auto` also what it measured (per backend: argmax
    agreement and ms) once it has chosen."""
    out: dict[str, Any] = {"backend": backend.name, "device": str(backend.device)}
    if isinstance(backend, AutoBackend):
        out["auto"] = dict(backend.table)
        backend = backend.chosen or backend
    if isinstance(backend, OnnxRuntimeBackend):
        out["providers"] = backend.providers
    return out
