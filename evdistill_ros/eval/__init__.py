"""Evaluation and visualisation: mIoU of APS and event networks on the same test samples, figures.

    ConfusionMatrix                                   (eval.metrics; numpy only)
    evaluate(data, *, aps_ckpt=None, event_ckpt=None, format=None, ...) -> {"aps": {...}, "events": {...}}
    evaluate_model(model, meta, samples, modality, *, batch_size=8, ...) -> dict  (shared with training)
    ModelEvaluator, predict, markdown_table, load_network                      (eval.evaluate)
    five_panel_figure, metrics_figures, write_video                            (eval.visualize)

Commands: `evdistill evaluate`, `evdistill visualize` (eval.commands). Names resolve on first
use (evdistill_ros._lazy) so the CLI does not load torch or matplotlib to parse its arguments.
"""
from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ConfusionMatrix": ".metrics",
    "evaluate": ".evaluate", "evaluate_model": ".evaluate", "ModelEvaluator": ".evaluate", "predict": ".evaluate",
    "markdown_table": ".evaluate", "load_network": ".evaluate", "sample_input": ".evaluate",
    "five_panel_figure": ".visualize", "metrics_figures": ".visualize", "write_video": ".visualize",
    "visualize_samples": ".visualize",
})
