#!/usr/bin/env python3
"""Inference latency of the segmentation networks (DeepLabv3+, every backbone), ms per frame.

CPU: torch.set_num_threads(--threads, default 2), fp32, batch 1, eval, no_grad; each network is
timed in the default (NCHW contiguous) layout and channels_last, and the faster is marked. The
reference in the same run is the EvDistill authors' configuration (ResNet-101 at 256x512, their
released networks), plus each network at the DAVIS346 sizes 200x346 (Ev-SegNet / DDD17 crop) and
260x346 (full sensor). Reported: the median and the minimum of --iters runs after --warmup runs;
on a machine shared with other jobs the minimum is the better estimate of what the network costs.
GPU (when torch.cuda.is_available()): also fp16 autocast, channels_last and torch.compile.

    python bench/bench_models.py [--quick] [--threads 2] [--iters 10] [--backbones resnet18,mobilenetv2@128]
    python bench/bench_models.py --backends      every inference backend on the same networks, same run
    python bench/bench_models.py --students      the real-time students: (architecture, input) -> ms as
                                                 the node runs them (Predictor, default backend) against
                                                 the DeepLabV3+ demo student in torch eager, same run

A backbone written NAME@C is built with aspp_channels=decoder_channels=C (the light head for real
time; the default head has 256 channels as in the authors' network).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evdistill_ros.models import BACKBONES, build_model  # noqa: E402

SIZES = ((200, 346), (260, 346))
AUTHORS = ("resnet101", (256, 512))


def time_ms(model: torch.nn.Module, x: torch.Tensor, warmup: int, iters: int, sync=None) -> tuple[float, float]:
    """(median, min) milliseconds per forward pass."""
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        if sync:
            sync()
        runs = []
        for _ in range(iters):
            t0 = time.perf_counter()
            model(x)
            if sync:
                sync()
            runs.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(runs), min(runs)


def make(spec: str, in_channels: int) -> torch.nn.Module:
    """NAME, NAME@C (aspp_channels = decoder_channels = C) or NAME@CxW (and width_mult W)."""
    name, _, rest = spec.partition("@")
    ch, _, width = rest.partition("x")
    head = {"aspp_channels": int(ch), "decoder_channels": int(ch)} if ch else {}
    if width:
        head["width_mult"] = float(width)
    return build_model(backbone=name, in_channels=in_channels, **head).eval()


def int8_backend(model, meta: dict, calibration: list):
    """onnxruntime on the int8 model (models.export.quantize_int8) of `model`."""
    import tempfile

    from evdistill_ros.models.backends import OnnxRuntimeBackend
    from evdistill_ros.models.export import onnx_bytes, quantize_int8

    with tempfile.TemporaryDirectory() as tmp:
        quantize_int8(onnx_bytes(model, meta), calibration * 4, Path(tmp) / "q.onnx")
        return OnnxRuntimeBackend((Path(tmp) / "q.onnx").read_bytes(), torch.device("cpu"))


BACKEND_CASES = (("mobilenetv2@128x0.5", (200, 346), 3), ("resnet18", (200, 346), 3), ("resnet101", (256, 512), 3))


def backend_rows(threads: int, iters: int) -> None:
    """Every CPU backend on the same network and input, same run: p50 / p95 ms and the ratio to
    torch eager (channels_last), with the argmax agreement on random inputs."""
    import numpy as np

    from evdistill_ros.models.backends import create_backend
    from evdistill_ros.models.export import parity

    print(f"\nbackends, CPU, {threads} threads, batch 1, fp32 ({iters} runs each)")
    print("| network | input | backend | ms p50 / p95 | vs torch eager | argmax agreement |")
    print("|---|---|---|---:|---:|---:|")
    for spec, hw, c in BACKEND_CASES:
        torch.manual_seed(0)
        model = make(spec, c)
        meta = {"in_channels": c, "input_size": {"height": hw[0], "width": hw[1]}}
        x = torch.rand(1, c, *hw)
        rng = np.random.default_rng(0)
        inputs = [rng.standard_normal((1, c, *hw)).astype(np.float32) for _ in range(2)]
        ref = None
        base = None
        for name in ("torch", "onnxruntime", "openvino", "onnxruntime int8"):
            try:
                if name == "onnxruntime int8":  # speed only: calibrated on random inputs here
                    b = int8_backend(model, meta, inputs)
                else:
                    b = create_backend(name, model, meta, torch.device("cpu"))
            except Exception as exc:  # noqa: BLE001 - an optional backend that is not installed
                print(f"| {spec} | {hw[0]}x{hw[1]} | {name} | not available: {str(exc).splitlines()[0]} | | |")
                continue
            fn = (lambda b: lambda a: b.run(torch.from_numpy(a)).numpy())(b)
            ref = ref or fn
            _, agree = parity(ref, fn, inputs)
            p50, p95 = _percentiles(lambda: b.run(x), iters)
            base = base or p50
            print(f"| {spec} | {hw[0]}x{hw[1]} | {name} | {p50:.1f} / {p95:.1f} | {base / p50:.2f}x | "
                  f"{100 * agree:.2f}% |", flush=True)


# The students measured by --students; the first is the reference (the demo's student until 2026-12).
STUDENTS = (
    ("DeepLabV3+ MobileNetV2 x0.5, ASPP / decoder 128, OS 16",
     dict(arch="deeplabv3plus", output_stride=16, width_mult=0.5, aspp_channels=128, decoder_channels=128)),
    ("LR-ASPP MobileNetV2 x0.5, head 128, OS 16", dict(arch="lraspp", output_stride=16, width_mult=0.5, head_channels=128)),
    ("LR-ASPP MobileNetV2 x0.5, head 128, OS 32", dict(arch="lraspp", output_stride=32, width_mult=0.5, head_channels=128)),
    ("LR-ASPP MobileNetV2 x1.0, head 128, OS 16", dict(arch="lraspp", output_stride=16, width_mult=1.0, head_channels=128)),
)
STUDENT_SIZES = ((120, 160), (200, 346), (260, 346))


def _interleaved_percentiles(fns, rounds: int) -> list[tuple[float, float]]:
    """(p50, p95) ms of each function, timed in turn round after round: drift of the clock speed and
    other work on the machine fall on all of them alike."""
    for fn in fns:
        fn()
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            runs[k].append((time.perf_counter() - t0) * 1e3)
    return [(statistics.median(r), sorted(r)[min(len(r) - 1, int(0.95 * len(r)))]) for r in runs]


def _percentiles(fn, iters: int) -> tuple[float, float]:
    return _interleaved_percentiles([fn], iters)[0]


def _window(hw: tuple[int, int], spec, seed: int = 0):
    """One event window embedded as the student's input (200k simulated-rate events, 50 ms)."""
    import numpy as np

    from evdistill_ros.events import Events

    rng = np.random.default_rng(seed)
    n = 200_000
    ev = Events(rng.integers(0, hw[1], n), rng.integers(0, hw[0], n), np.sort(rng.integers(0, 50_000_000, n)),
                rng.integers(0, 2, n))
    return next(iter(spec.windows_at([ev], [50_000_000], height=hw[0], width=hw[1])))[1]


def _as_predictor(model, spec, folder: Path):
    from evdistill_ros.models import save_checkpoint
    from evdistill_ros.models.predictor import Predictor

    path = folder / f"student{len(list(folder.iterdir()))}.pt"
    save_checkpoint(path, model.eval(), {"representation": spec.to_dict(), "input_size": None})
    return Predictor(path, device="cpu")  # the node's default backend


def student_rows(threads: int, iters: int) -> None:
    """(architecture, input) -> ms p50 / p95: torch eager forward, and the whole Predictor call the
    node makes (preprocess, default backend, argmax at the input size); ratio = the reference's
    torch eager at that size / this row's Predictor. Then config/demo.yaml's student, as the node
    runs it, against the reference in torch eager at the demo's input size."""
    import tempfile

    from evdistill_ros.distill.config import load_config
    from evdistill_ros.distill.methods import build_net

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "demo.yaml")
    spec = config.data.event_input
    channels = int(spec.channels)
    print(f"\nstudents, CPU, {threads} threads, batch 1, fp32, input: {spec.describe()} ({channels} channels), "
          f"{iters} runs each")
    print("| student | input | torch eager ms p50 / p95 | Predictor (backend) ms p50 / p95 | reference eager / this |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        reference: dict[tuple, float] = {}
        for label, kw in STUDENTS:
            for hw in STUDENT_SIZES:
                torch.manual_seed(0)
                model = build_model(backbone="mobilenetv2", in_channels=channels, num_classes=6, **kw).eval()
                x = torch.from_numpy(_window(hw, spec))[None]
                with torch.inference_mode():
                    eager = _percentiles(lambda: model(x), iters)
                reference.setdefault(hw, eager[0])
                predictor = _as_predictor(model, spec, Path(tmp))
                window = _window(hw, spec, seed=1)
                node = _percentiles(lambda: predictor(window), iters)
                print(f"| {label} | {hw[0]}x{hw[1]} | {eager[0]:.1f} / {eager[1]:.1f} | {node[0]:.1f} / {node[1]:.1f} "
                      f"({predictor.backend.name}) | {reference[hw] / node[0]:.1f}x |", flush=True)
        # the headline: config/demo.yaml's student as the node runs it against the reference (the first
        # row's network) in torch eager on the same window, interleaved call by call, more rounds
        hw = (int(config.compare.height), int(config.compare.width))
        student = build_net(config.model_for("student"), channels, log=lambda s: None).eval()
        predictor = _as_predictor(student, spec, Path(tmp))
        torch.manual_seed(0)
        ref_model = build_model(backbone="mobilenetv2", in_channels=channels, num_classes=6, **STUDENTS[0][1]).eval()
        window = _window(hw, spec, seed=2)
        x = torch.from_numpy(window)[None]
        rounds = 4 * iters
        with torch.inference_mode():
            ref, node = _interleaved_percentiles([lambda: ref_model(x), lambda: predictor(window)], rounds)
        m = config.model_for("student")
        print(f"\nconfig/demo.yaml's student ({m.arch}, {m.backbone} x{m.width_mult}, OS {m.output_stride}) as the node "
              f"runs it (Predictor, default backend -> {predictor.backend.name}) at {hw[0]}x{hw[1]}: "
              f"{node[0]:.2f} / {node[1]:.2f} ms p50 / p95; the reference ({STUDENTS[0][0]}) in torch eager on the "
              f"same window, calls interleaved, {rounds} rounds: {ref[0]:.2f} / {ref[1]:.2f} ms: "
              f"{ref[0] / node[0]:.1f}x faster (p50), {ref[1] / node[1]:.1f}x (p95)")


def cpu_rows(backbones: list[str], sizes, in_channels: int, warmup: int, iters: int) -> list[tuple]:
    rows = []
    for backbone in backbones:
        torch.manual_seed(0)
        model = make(backbone, in_channels)
        for hw in sizes:
            x = torch.rand(1, in_channels, *hw)
            nchw = time_ms(model, x, warmup, iters)
            cl_model = model.to(memory_format=torch.channels_last)
            cl = time_ms(cl_model, x.to(memory_format=torch.channels_last), warmup, iters)
            model = model.to(memory_format=torch.contiguous_format)
            best = "channels_last" if cl[1] < nchw[1] else "nchw"
            rows.append((backbone, f"{hw[0]}x{hw[1]}", nchw, cl, best, 1e3 / min(nchw[1], cl[1])))
            print(f"  {backbone:16s} {hw[0]}x{hw[1]}: nchw {nchw[0]:7.1f} / {nchw[1]:7.1f} ms  "
                  f"channels_last {cl[0]:7.1f} / {cl[1]:7.1f} ms (median / min)", flush=True)
    return rows


def gpu_rows(backbones: list[str], sizes, in_channels: int, warmup: int, iters: int) -> list[tuple]:
    rows = []
    sync = torch.cuda.synchronize
    for backbone in backbones:
        model = make(backbone, in_channels).cuda()
        for hw in sizes:
            x = torch.rand(1, in_channels, *hw, device="cuda")
            res = {"fp32": time_ms(model, x, warmup, iters, sync)[0]}
            with torch.autocast("cuda", dtype=torch.float16):
                res["fp16"] = time_ms(model, x, warmup, iters, sync)[0]
            cl = model.to(memory_format=torch.channels_last)
            xc = x.to(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.float16):
                res["fp16+cl"] = time_ms(cl, xc, warmup, iters, sync)[0]
            try:
                compiled = torch.compile(cl)
                with torch.autocast("cuda", dtype=torch.float16):
                    res["fp16+cl+compile"] = time_ms(compiled, xc, warmup + 3, iters, sync)[0]
            except Exception as exc:  # noqa: BLE001 - compile needs a toolchain; report, do not die
                print(f"  torch.compile failed for {backbone}: {str(exc).splitlines()[0]}")
                res["fp16+cl+compile"] = float("nan")
            model = cl.to(memory_format=torch.contiguous_format)
            rows.append((backbone, f"{hw[0]}x{hw[1]}", *res.values()))
            print(f"  {backbone:12s} {hw[0]}x{hw[1]}: " + "  ".join(f"{k} {v:.2f} ms" for k, v in res.items()), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="resnet18 and mobilenetv2@128 at 200x346, few runs (smoke test)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--in-channels", type=int, default=2, help="input channels (2: evdistill_2ch event embedding)")
    ap.add_argument("--backbones", default=",".join((*BACKBONES, "mobilenetv2@128", "resnet18@128")))
    ap.add_argument("--backends", action="store_true", help="only the backend table (torch vs onnxruntime vs openvino)")
    ap.add_argument("--students", action="store_true", help="only the real-time student table (see the module doc)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.backends:
        backend_rows(args.threads, args.iters * 3)
        return
    if args.students:
        student_rows(args.threads, args.iters * 3)
        return
    backbones = [b for b in args.backbones.split(",") if b]
    sizes = SIZES
    iters, warmup = args.iters, args.warmup
    if args.quick:
        backbones, sizes, iters, warmup = ["mobilenetv2@128", "resnet18"], SIZES[:1], 3, 1
    print(f"device: CPU {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, fp32, batch 1, eval, in_channels {args.in_channels}")
    rows = cpu_rows(backbones, sizes, args.in_channels, warmup, iters)
    if not args.quick:
        print("reference: the EvDistill authors' network (ResNet-101, 3 channels, 256x512)")
        rows += cpu_rows([AUTHORS[0]], [AUTHORS[1]], 3, 1, max(3, iters // 3))
    print("\n| backbone | input (HxW) | NCHW ms median / min | channels_last ms median / min | faster | frames/s (min) |")
    print("|---|---|---:|---:|---|---:|")
    for b, hw, a, c, best, fps in rows:
        print(f"| {b} | {hw} | {a[0]:.1f} / {a[1]:.1f} | {c[0]:.1f} / {c[1]:.1f} | {best} | {fps:.1f} |")

    if torch.cuda.is_available():
        print(f"\ndevice: {torch.cuda.get_device_name(0)}")
        grows = gpu_rows(backbones, sizes, args.in_channels, warmup * 3, iters * 3)
        print("\n| backbone | input (HxW) | fp32 ms (median) | fp16 ms | fp16+channels_last ms | fp16+cl+compile ms |")
        print("|---|---|---:|---:|---:|---:|")
        for b, hw, *v in grows:
            print(f"| {b} | {hw} | " + " | ".join(f"{t:.2f}" for t in v) + " |")


if __name__ == "__main__":
    main()
