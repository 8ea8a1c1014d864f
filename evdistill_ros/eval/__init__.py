"""Evaluation and visualisation: mIoU of APS and event networks on the same test samples, figures.

    ConfusionMatrix                                   (eval.metrics; numpy only)
    evaluate(data, *, aps_ckpt=None, event_ckpt=None, format=None, ...) -> {"aps": {...}, "events": {...}}
    evaluate_model(model, meta, samples, modality, *, batch_size=8, ...) -> dict  (shared with training)
    ModelEvaluator, predict, markdown_table, load_network                      (eval.evaluate)
    five_panel_figure, metrics_figures, write_video                            (eval.visualize)

Commands: `evdistill evaluate`, `evdistill visualize` (eval.commands). Names are imported lazily
so that `import evdistill_ros.eval` (and the CLI) does not load torch or matplotlib.
"""
from __future__ import annotations

from typing import Any

_LAZY = {
    "ConfusionMatrix": "metrics",
    "evaluate": "evaluate", "evaluate_model": "evaluate", "ModelEvaluator": "evaluate", "predict": "evaluate",
    "markdown_table": "evaluate", "load_network": "evaluate", "sample_input": "evaluate",
    "five_panel_figure": "visualize", "metrics_figures": "visualize", "write_video": "visualize",
    "visualize_samples": "visualize",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
