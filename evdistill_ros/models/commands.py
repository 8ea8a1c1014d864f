"""`evdistill export`: a checkpoint (ours or the EvDistill authors') to ONNX, metadata inside.

    evdistill export CHECKPOINT --out model.onnx [--static] [--height H --width W] [--opset N]

After writing, the ONNX model and the checkpoint run on the same random inputs and the largest
logit difference and the argmax agreement are printed (exit 1 when agreement < 99.5 %).
"""
from __future__ import annotations

import argparse


def _export(args: argparse.Namespace) -> int:
    from .export import export_onnx  # on use: the CLI parses without torch/numba

    if (args.height is None) != (args.width is None):
        raise ValueError("give both --height and --width, or neither")
    report = export_onnx(args.checkpoint, args.out, dynamic=not args.static, opset=args.opset,
                         height=args.height, width=args.width)
    print(report.summary())
    if report.argmax_agreement < 0.995:
        print(f"evdistill export: argmax agreement below 99.5 %: do not deploy {args.out}")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="checkpoint -> ONNX (metadata embedded; checked against torch after writing)")
    p.add_argument("checkpoint", help="checkpoint.pt of this project, or an EvDistill authors' .pth")
    p.add_argument("--out", required=True, help="output .onnx")
    p.add_argument("--static", action="store_true", help="fix the input size (default: batch, height, width free)")
    p.add_argument("--height", type=int, default=None, help="traced / fixed input height (default: the checkpoint's, "
                   "else 200)")
    p.add_argument("--width", type=int, default=None, help="traced / fixed input width (default: the checkpoint's, else 346)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.set_defaults(func=_export)
