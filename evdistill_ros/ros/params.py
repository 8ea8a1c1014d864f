"""The nodes' private parameters, declared once: name, default, meaning, and which nodes read them.

`common.param(name)` reads a parameter with the default declared here, and the parameter tables
of the documentation (docs/reference/ros_parameters.md, scripts/gen_docs.py) are generated from
the same table, so a node and its documentation cannot disagree. No rospy here: the docs build
imports it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..events.spec import DEFAULT_BOUNDS
from ..wire.dvs_msgs import TIME_OUTLIER_NS
from .health import HealthLimits

ACC, SEG, TRAIN = "accumulator_node", "segmentation_node", "train_node"
NODES = (ACC, SEG, TRAIN)
_HEALTH = HealthLimits()
_WINDOW = "window settings: empty / 0 keep the checkpoint's (else the package default) event input"


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    help: str
    nodes: tuple[str, ...]


PARAMS: dict[str, Param] = {p.name: p for p in (
    # inputs and windows (accumulator_node, and segmentation_node with ~in_process)
    Param("checkpoint", "", "student checkpoint (.pt / .onnx): its event input configures the windows; "
          "watched every ~checkpoint_check_s (a missing one retried, a replaced one reloaded)", (ACC, SEG)),
    Param("checkpoint_check_s", 5.0, "seconds between looks at the checkpoint files", (ACC, SEG)),
    Param("representation", "", f"event representation name ({_WINDOW})", (ACC, SEG)),
    Param("representation_params", None, "its parameters, a mapping or YAML text like {bins: 5}", (ACC, SEG)),
    Param("window_ms", 0.0, "window length in ms of event time", (ACC, SEG)),
    Param("stride_ms", 0.0, "window stride in ms (0: the window length)", (ACC, SEG)),
    Param("window_events", 0, "window length in events instead of time", (ACC, SEG)),
    Param("stride_events", 0, "stride in events", (ACC, SEG)),
    Param("height", 0, "sensor height when the messages do not say it (0: from the messages)", (ACC, SEG)),
    Param("width", 0, "sensor width when the messages do not say it", (ACC, SEG)),
    Param("queue_size", 200, "subscriber queue of the events topic (messages)", (ACC, SEG)),
    Param("time_outlier_s", TIME_OUTLIER_NS / 1e9, "events this far from their message's time are dropped "
          "(a glitched clock), counted in dropped_time_outlier", (ACC, SEG)),
    Param("max_height", 2048, "largest sensor height a message may declare (what a publisher may make "
          "the node allocate)", (ACC, SEG)),
    Param("max_width", 2048, "largest sensor width a message may declare", (ACC, SEG)),
    Param("max_embedding_mb", DEFAULT_BOUNDS.max_embedding_bytes / 2**20, "largest embedding one window may "
          "take (MiB)", (ACC, SEG)),
    Param("max_windows_per_s", DEFAULT_BOUNDS.max_windows_per_s, "most windows per second of event time",
          (ACC, SEG)),
    Param("min_stride_events", DEFAULT_BOUNDS.min_stride_events, "smallest stride of count windows", (ACC, SEG)),
    # health (/diagnostics)
    Param("warn_drop_fraction", _HEALTH.warn_drop_fraction, "WARN above this fraction of inputs dropped",
          (ACC, SEG)),
    Param("warn_latency_ms", _HEALTH.warn_latency_ms, "WARN above this latency p95 (segmentation) or lag "
          "(accumulator)", (ACC, SEG)),
    Param("error_silence_s", _HEALTH.error_silence_s, "ERROR when a connected input is silent this long",
          (ACC, SEG)),
    # segmentation
    Param("teacher_checkpoint", "", "an image network on the APS frames: checkpoint, .onnx or teacher card "
          "(.yaml); empty: no teacher", (SEG,)),
    Param("device", "auto", "auto | cpu | cuda", (SEG,)),
    Param("fp16", False, "half precision on CUDA", (SEG,)),
    Param("backend", "auto", "auto (the fastest backend that agrees with torch, chosen at load) | torch | "
          "torch-compile | onnxruntime | openvino (models.backends)", (SEG,)),
    Param("in_process", False, "subscribe to the events topic directly (no accumulator, no message hop)",
          (SEG,)),
    Param("overlay_on", "events", "overlay background: events | aps", (SEG,)),
    Param("overlay_alpha", 0.5, "weight of the class colours in the overlay", (SEG,)),
    Param("compressed_format", "jpeg", "~overlay/compressed format: jpeg | png", (SEG,)),
    Param("jpeg_quality", 90, "JPEG quality of ~overlay/compressed", (SEG,)),
    Param("publish_frame", False, "publish a static transform ~fixed_frame -> ~camera_frame for rviz", (SEG,)),
    Param("fixed_frame", "map", "rviz's fixed frame", (SEG,)),
    Param("camera_frame", "camera", "the images' frame", (SEG,)),
    # training
    Param("config", "", "training config YAML (config/*.yaml)", (TRAIN,)),
    Param("bags", "", "training bags / recordings, space separated (replace data.bags)", (TRAIN,)),
    Param("stage", "student", "teacher | student", (TRAIN,)),
    Param("method", "", "student method: supervised | kd | evdistill (empty: the config's)", (TRAIN,)),
    Param("teacher", "", "teacher checkpoint or card (empty: the config's student.teacher)", (TRAIN,)),
    Param("out", "", "run folder (empty: train.out_dir/<name>)", (TRAIN,)),
    Param("resume", False, "continue from the run folder's state.pt", (TRAIN,)),
    Param("set", "", "config overrides KEY=VALUE, space separated", (TRAIN,)),
)}


def declared(name: str) -> Param:
    """The declaration of ~name; KeyError naming the known ones otherwise (a typo in a node)."""
    try:
        return PARAMS[name]
    except KeyError:
        raise KeyError(f"parameter ~{name} is not declared in evdistill_ros.ros.params") from None


def markdown_table(node: str) -> str:
    """The node's parameters as a markdown table (name, default, meaning)."""
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for p in PARAMS.values():
        if node in p.nodes:
            default = "(none)" if p.default in ("", None) else f"`{p.default!r}`".replace("'", "")
            rows.append(f"| `~{p.name}` | {default} | {p.help.replace('|', '&#124;')} |")
    return "\n".join(rows)
