"""`evdistill export`: a checkpoint (ours or the EvDistill authors') to ONNX, metadata inside,
optionally quantised to int8 on calibration windows from bags.

    evdistill export CHECKPOINT --out model.onnx [--static] [--height H --width W] [--opset N]
    evdistill export CARD.yaml --out teacher.onnx     a teacher card's network, the card inside
    evdistill export CHECKPOINT --out model_int8.onnx --int8 --calibration BAG [BAG ...]
                                [--calibration-windows 300]

After writing, the ONNX model is run beside its reference (torch for fp32, the fp32 ONNX for
int8) and the largest logit difference and the argmax agreement are printed; fp32 exits 1 when
agreement is under 99.5 %. The accuracy cost of int8 is measured where it matters, on labelled
data: `evdistill evaluate --event-ckpt model_int8.onnx` beside the fp32 checkpoint.

    calibration_inputs(bags, card, n) -> list of preprocessed (1, C, H, W) float32 inputs
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # annotation only: the CLI parses without torch
    from ..models.card import NetworkCard


def calibration_inputs(bags: Sequence[str], card: "NetworkCard", n: int = 300) -> list[np.ndarray]:
    """Up to `n` network inputs from the bags, spread over them: event windows (the checkpoint's
    event input) or APS frames, preprocessed exactly as inference does."""
    from ..io.samples import iter_samples  # on use: the CLI parses without torch/numba
    from ..models.preprocess import Preprocessor  # on use: the CLI parses without torch/numba

    events = card.is_event_network
    prep = Preprocessor.for_card(card)
    per_bag = max(1, n // max(1, len(bags)))
    out: list[np.ndarray] = []
    for bag in bags:
        opts = {"event_input": card.event_input} if events else {"need_events": False}
        samples = [s for s in iter_samples(bag, "bag", **opts) if (s.events if events else s.aps) is not None]
        pick = np.linspace(0, len(samples) - 1, min(per_bag, len(samples))).astype(int) if samples else []
        out += [prep(samples[i].events if events else samples[i].aps).numpy() for i in pick]
    return out[:n]


def _export(args: argparse.Namespace) -> int:
    from ..models.files import load_network  # on use: the CLI parses without torch/numba
    from ..models.export import export_onnx, onnx_bytes, quantize_int8  # on use: the CLI parses without torch/numba

    if (args.height is None) != (args.width is None):
        raise ValueError("give both --height and --width, or neither")
    if args.int8:
        if not args.calibration:
            raise ValueError("--int8 needs --calibration BAG [BAG ...] (training recordings)")
        model, card = load_network(args.checkpoint)
        inputs = calibration_inputs(args.calibration, card, args.calibration_windows)
        if not inputs:
            raise ValueError(f"no calibration windows in {', '.join(args.calibration)}")
        report = quantize_int8(onnx_bytes(model, card.to_dict(), dynamic=not args.static, opset=args.opset,
                                          height=args.height, width=args.width), inputs, args.out)
        print(report.summary())
        print("its accuracy cost: evdistill evaluate --event-ckpt (or --aps-ckpt) on labelled data, beside the fp32 one")
        return 0
    from ..models.teacher_card import export_card, is_card  # on use: the CLI parses without torch/numba

    export = export_card if is_card(args.checkpoint) else export_onnx
    report = export(args.checkpoint, args.out, dynamic=not args.static, opset=args.opset,
                    height=args.height, width=args.width)
    print(report.summary())
    if report.argmax_agreement < 0.995:
        print(f"evdistill export: argmax agreement below 99.5 %: do not deploy {args.out}")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="checkpoint -> ONNX (metadata embedded; checked after writing), or int8")
    p.add_argument("checkpoint", help="checkpoint.pt of this project, an EvDistill authors' .pth, or a teacher card "
                                      "(.yaml): its network is written with the card inside (no card needed after)")
    p.add_argument("--out", required=True, help="output .onnx")
    p.add_argument("--static", action="store_true", help="fix the input size (default: batch, height, width free)")
    p.add_argument("--height", type=int, default=None, help="traced / fixed input height (default: the checkpoint's, "
                   "else 200)")
    p.add_argument("--width", type=int, default=None, help="traced / fixed input width (default: the checkpoint's, else 346)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--int8", action="store_true", help="post-training static int8 (ONNX Runtime), calibrated on --calibration")
    p.add_argument("--calibration", nargs="+", default=None, help="bags whose windows (or frames) calibrate int8")
    p.add_argument("--calibration-windows", type=int, default=300, help="calibration inputs (default 300)")
    p.set_defaults(func=_export)
