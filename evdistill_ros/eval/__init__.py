"""Evaluation and visualisation: mIoU of APS and event networks on the same test samples, figures.

    ConfusionMatrix                                   (eval.metrics; numpy only)
    ScoringSetup, usable, sample_input                (eval.scoring: networks, class sets, samples)
    evaluate(data, *, aps_ckpt=None, event_ckpt=None, format=None, ...) -> {"aps": {...}, "events": {...}}
    evaluate_model(predictor, samples, modality, *, batch_size=8, ...) -> dict  (shared with training)
    ModelEvaluator, markdown_table                    (eval.evaluate)
    five_panel_figure, metrics_figures, write_video   (eval.figures)
    visualize_samples                                 (eval.visualize)

Commands: `evdistill evaluate`, `evdistill visualize` (eval.commands). Names resolve on first
use (evdistill_ros._lazy) so the CLI does not load torch or matplotlib to parse its arguments.
"""
from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ConfusionMatrix": ".metrics",
    "ScoringSetup": ".scoring", "usable": ".scoring", "sample_input": ".scoring",
    "evaluate": ".evaluate", "evaluate_model": ".evaluate", "ModelEvaluator": ".evaluate",
    "markdown_table": ".evaluate",
    "five_panel_figure": ".figures", "metrics_figures": ".figures", "write_video": ".figures",
    "visualize_samples": ".visualize",
})
