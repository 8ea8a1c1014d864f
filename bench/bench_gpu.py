#!/usr/bin/env python3
"""Every GPU figure of the project in one short run (`bench/gpu.sh` calls this).

1. Network latency, batch 1, per backbone and input size: fp32, fp16, fp16 + channels_last,
   fp16 + channels_last + CUDA graph replay, and onnxruntime's CUDA provider when installed;
   the ratio of each to fp32 eager in the same run.
2. The live node's path in process: one event window (SlidingWindow, numba, on the CPU) ->
   Predictor (preprocess, network, restore) -> labels, p50 / p95 ms per window, for the
   real-time student and the authors' ResNet-101.
3. Training: seconds per step of the teacher, the supervised student and the EvDistill student
   (all terms) at the demo's scale and at DDD17's (200x346, batch 8), with AMP, on random data.

    python bench/bench_gpu.py [--quick] [--device cuda]      (--device cpu: a smoke test anywhere)

Needs torch with CUDA, numpy, numba, OpenCV; no ROS, no bags.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evdistill_ros.distill.methods import method_for  # noqa: E402
from evdistill_ros.distill.config import Config, ModelConfig  # noqa: E402
from evdistill_ros.distill.methods import LossContext  # noqa: E402
from evdistill_ros.events import DEFAULT_EVENT_INPUT, Events  # noqa: E402
from evdistill_ros.models import Preprocessor, build_model, save_checkpoint  # noqa: E402
from evdistill_ros.models.predictor import Predictor  # noqa: E402

NETS = {"mobilenetv2@128 x0.5": dict(backbone="mobilenetv2", width_mult=0.5, aspp_channels=128, decoder_channels=128),
        "resnet18": dict(backbone="resnet18"),
        "resnet101 (authors)": dict(backbone="resnet101")}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ms(fn, device, warmup: int, iters: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    sync(device)
    runs = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        runs.append((time.perf_counter() - t0) * 1e3)
    runs.sort()
    return statistics.median(runs), runs[min(len(runs) - 1, int(0.95 * len(runs)))]


def network_rows(device, hw_list, warmup, iters) -> list[dict]:
    rows = []
    for name, kw in NETS.items():
        in_ch = 3
        model = build_model("deeplabv3plus", num_classes=6, in_channels=in_ch, **kw).to(device).eval()
        for hw in hw_list if "authors" not in name else [(256, 512)]:
            x = torch.rand(1, in_ch, *hw, device=device)
            res = {}
            with torch.inference_mode():
                res["fp32"] = time_ms(lambda: model(x), device, warmup, iters)[0]
                if device.type == "cuda":
                    with torch.autocast("cuda", dtype=torch.float16):
                        res["fp16"] = time_ms(lambda: model(x), device, warmup, iters)[0]
                    cl = model.half().to(memory_format=torch.channels_last)
                    xh = x.half().contiguous(memory_format=torch.channels_last)
                    res["fp16+cl"] = time_ms(lambda: cl(xh), device, warmup, iters)[0]
                    res["fp16+cl+graph"] = graph_ms(cl, xh, device, warmup, iters)
                    model = cl.float().to(memory_format=torch.contiguous_format)
            res.update(ort_cuda_ms(model, x, device, warmup, iters))
            rows.append({"network": name, "input": f"{hw[0]}x{hw[1]}", **{k: round(v, 3) for k, v in res.items()}})
            print("  " + json.dumps(rows[-1]), flush=True)
    return rows


def graph_ms(model, x, device, warmup, iters) -> float:
    """CUDA graph replay of one forward (static input buffer): launch overhead gone."""
    static_in = x.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.inference_mode():
        for _ in range(3):
            model(static_in)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.inference_mode():
        static_out = model(static_in)  # noqa: F841 - kept alive by the graph
    return time_ms(g.replay, device, warmup, iters)[0]


def ort_cuda_ms(model, x, device, warmup, iters) -> dict:
    try:
        import onnxruntime as ort

        from evdistill_ros.models.export import onnx_bytes
    except ImportError:
        return {}
    if device.type != "cuda" or "CUDAExecutionProvider" not in ort.get_available_providers():
        return {}
    sess = ort.InferenceSession(onnx_bytes(model, {"in_channels": x.shape[1]}),
                                providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    xn = x.float().cpu().numpy()
    return {"ort_cuda": time_ms(lambda: sess.run(None, {"input": xn}), device, warmup, iters)[0]}


def node_path_rows(device, tmp: Path, windows: int) -> list[dict]:
    """Window kernel + Predictor per window, as segmentation_node in process does."""
    rows = []
    rng = np.random.default_rng(0)
    h, w = 200, 346
    n = 300_000  # 6 Mev/s over a 50 ms window
    t0 = 1_700_000_000_000_000_000
    for name in ("mobilenetv2@128 x0.5", "resnet101 (authors)"):
        model = build_model("deeplabv3plus", num_classes=6, in_channels=3, **NETS[name]).eval()
        ckpt = save_checkpoint(tmp / "n.pt", model, {"representation": DEFAULT_EVENT_INPUT.to_dict(),
                                                     "input_size": None})
        for fp16 in ((False, True) if device.type == "cuda" else (False,)):
            pred = Predictor(ckpt, device=str(device), fp16=fp16)
            win = DEFAULT_EVENT_INPUT.make_window(h, w)
            per_window, infer = [], []
            for k in range(windows + 3):
                t = np.sort(rng.integers(t0 + k * 50_000_000, t0 + (k + 1) * 50_000_000, n))
                ev = Events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.integers(0, 2, n))
                start = time.perf_counter()
                out = win.push(ev)
                mid = time.perf_counter()
                for wd in out:
                    pred(wd.embedding)
                end = time.perf_counter()
                if k >= 3 and out:
                    per_window.append((end - start) * 1e3)
                    infer.append((end - mid) * 1e3)
            per_window.sort()
            rows.append({"network": name, "fp16": fp16, "window_to_labels_ms_p50": round(statistics.median(per_window), 2),
                         "p95": round(per_window[int(0.95 * (len(per_window) - 1))], 2),
                         "predictor_ms_p50": round(statistics.median(infer), 2)})
            print("  " + json.dumps(rows[-1]), flush=True)
    return rows


class _CacheFacts:
    """The one fact a method's build asks of a pair cache: the embedding's channel count."""

    meta = {"channels": 5}


def training_rows(device, steps: int, tmp: Path) -> list[dict]:
    """s/step of each method (built by its own Method.build) on random batches: the data loader
    is not part of the figure."""
    rows = []
    scales = {"demo 64x96 b6": (6, 64, 96), "ddd17 200x346 b8": (8, 200, 346)}
    model = ModelConfig(num_classes=6, width_mult=0.5, options={"aspp_channels": 128, "decoder_channels": 128})
    teacher = build_model("deeplabv3plus", "resnet18", in_channels=1, num_classes=6).eval()
    teacher_ckpt = save_checkpoint(tmp / "teacher.pt", teacher, {"representation": "aps", "preprocessing": {
        "frame": "gray", "scale": "auto", "channels": "exact"}})
    amp = device.type == "cuda"
    for scale, (b, h, w) in scales.items():
        for stage, method in (("teacher", None), ("student", "supervised"), ("student", "evdistill")):
            m = method_for(stage, method, False, Config().student)
            torch.manual_seed(0)
            nets = m.build(model, _CacheFacts(), str(teacher_ckpt), device, lambda s: None)
            for mod in nets.trained():
                mod.to(device).train()
            nets.prep = Preprocessor.from_metadata({"in_channels": 1 if stage == "teacher" else 5,
                                                    "preprocessing": {"scale": 1.0}})
            opt = torch.optim.SGD([p for mod in nets.trained() for p in mod.parameters()], lr=1e-3, momentum=0.9)
            scaler = torch.amp.GradScaler("cuda", enabled=amp)
            ev = torch.randn(b, 5, h, w, device=device)
            aps = torch.rand(b, 1, h, w, device=device)
            label = torch.randint(0, 6, (b, h, w), device=device)

            def step() -> None:
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                    terms = m.loss_terms(nets, LossContext(), None if stage == "teacher" else ev, aps, label)
                    loss = sum(m.weights[k] * v for k, v in terms.items() if m.weights[k] > 0)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()

            ms = time_ms(step, device, 3, steps)[0]
            rows.append({"scale": scale, "run": m.name, "s_per_step": round(ms / 1e3, 4)})
            print("  " + json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None, help="also write every row to this JSON file")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device here (use --device cpu for a smoke test)")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device: {name}, torch {torch.__version__}, numpy {np.__version__}")
    torch.backends.cudnn.benchmark = True
    warmup, iters = (2, 5) if args.quick else (10, 50)
    out: dict = {"device": name, "torch": torch.__version__}
    print("1. network latency, batch 1 (median ms)")
    out["networks"] = network_rows(device, [(200, 346)] if args.quick else [(200, 346), (260, 346)], warmup, iters)
    with tempfile.TemporaryDirectory() as tmp:
        print("2. node path in process: window -> labels")
        out["node_path"] = node_path_rows(device, Path(tmp), 5 if args.quick else 40)
        print("3. training, s/step on random batches (AMP on CUDA)")
        out["training"] = training_rows(device, 3 if args.quick else 20, Path(tmp))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
