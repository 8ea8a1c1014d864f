"""Figures and videos of predictions, and plots of `evdistill evaluate` results (matplotlib Agg).

    five_panel_figure(rows, path, *, representation="count", title=None, dpi=110) -> Path
        EvDistill's figure: one row per sample, columns event image | event prediction | APS |
        APS prediction | ground truth, in the class palette, with a legend. ``rows`` are
        PanelRow objects; a missing panel (no network, no label) is drawn grey with "n/a".
    compose_frame(row, *, representation="count", caption=None, min_panel_width=240) -> (H', W', 3) uint8
        The same five panels side by side as one image with titles and a legend strip (video frames).
    write_video(frames, path, fps=10) -> Path     .mp4 (imageio-ffmpeg, H.264) or .gif
    VideoWriter(path, fps)                         the same, streaming: append(frame), close()
    metrics_figures(results, out_dir) -> list[Path]
        From an evaluate result/JSON: confusion_<net>.png (row-normalised, % and pixel counts)
        and iou.png (per-class IoU bars of both networks, both mIoU conventions in the legend).

Colours: the class set's palette (ignore = black); event images from render.event_image (white
background, ON blue, OFF red), the same pictures the ROS overlay shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..atomic import PendingFile
from ..classes import DDD17, IGNORE_COLOR, ClassSet, class_set
from ..render import event_image, legend_strip, to_rgb
from .metrics import ConfusionMatrix

PANEL_TITLES = ("events", "event prediction", "APS frame", "APS prediction", "ground truth")
_NA_GREY = 200


@dataclass
class PanelRow:
    """What one row of the figure shows; any field may be None (drawn as "n/a")."""

    name: str = ""
    events: np.ndarray | None = None      # (C, H, W) embedding
    event_pred: np.ndarray | None = None  # (H, W) class ids
    aps: np.ndarray | None = None         # (H, W) or (H, W, 3) image
    aps_pred: np.ndarray | None = None
    label: np.ndarray | None = None       # (H, W) class ids, 255 = ignore
    classes: ClassSet = DDD17             # the set of event_pred, aps_pred and label (colours, legend)


def _panels(row: PanelRow, representation: str, hw: tuple[int, int]) -> list[np.ndarray | None]:
    """The five RGB uint8 panels at size ``hw`` (None where absent)."""
    import cv2

    def fit(img: np.ndarray | None, nearest: bool) -> np.ndarray | None:
        if img is None:
            return None
        if img.shape[:2] != hw:
            img = cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
        return img

    ev = None if row.events is None else event_image(row.events, representation)
    paint = row.classes.colorize
    return [fit(ev, False),
            None if row.event_pred is None else fit(paint(row.event_pred), True),
            None if row.aps is None else fit(to_rgb(row.aps), False),
            None if row.aps_pred is None else fit(paint(row.aps_pred), True),
            None if row.label is None else fit(paint(row.label), True)]


def row_hw(row: PanelRow) -> tuple[int, int]:
    for a in (row.label, row.aps, row.event_pred, row.aps_pred):
        if a is not None:
            return tuple(np.asarray(a).shape[:2])  # type: ignore[return-value]
    if row.events is not None:
        return tuple(row.events.shape[-2:])  # type: ignore[return-value]
    raise ValueError(f"sample {row.name!r}: nothing to draw")


def _legend_handles(classes: ClassSet = DDD17, with_ignore: bool = True) -> list[Any]:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=np.asarray(c) / 255.0, edgecolor="0.3", label=n)
               for n, c in zip(classes.names, classes.palette)]
    if with_ignore:
        handles.append(Patch(facecolor=np.asarray(IGNORE_COLOR) / 255.0, edgecolor="0.3", label="ignore"))
    return handles


def five_panel_figure(rows: Sequence[PanelRow], path: str | Path, *, representation: str = "count",
                      title: str | None = None, dpi: int = 110) -> Path:
    """Write the EvDistill five-panel figure of ``rows`` to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("five_panel_figure: no samples to draw")
    h, w = row_hw(rows[0])
    panel_w = 2.6
    panel_h = panel_w * h / w
    fig_h = len(rows) * (panel_h + 0.12) + 0.55 + (0.3 if title else 0)
    fig, axes = plt.subplots(len(rows), 5, figsize=(5 * panel_w + 0.4, fig_h), squeeze=False)
    for r, row in enumerate(rows):
        panels = _panels(row, representation, row_hw(row))
        for c, img in enumerate(panels):
            ax = axes[r, c]
            if img is None:
                ax.imshow(np.full((h, w, 3), _NA_GREY, np.uint8))
                ax.text(0.5, 0.5, "n/a", transform=ax.transAxes, ha="center", va="center", color="0.35", fontsize=11)
            else:
                ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_edgecolor("0.6")
            if r == 0:
                ax.set_title(PANEL_TITLES[c], fontsize=10)
        if row.name:
            axes[r, 0].set_ylabel(row.name, fontsize=7, rotation=90, labelpad=3)
    legend_h = 0.45 / fig_h
    classes = rows[0].classes
    fig.legend(handles=_legend_handles(classes), loc="lower center", ncol=min(classes.num_classes + 1, 10), fontsize=8,
               frameon=False,
               handlelength=1.2, columnspacing=1.2, bbox_to_anchor=(0.5, 0.0))
    top = 1 - (0.35 / fig_h if title else 0.25 / fig_h)
    fig.subplots_adjust(left=0.03, right=0.995, bottom=legend_h + 0.02 / fig_h, top=top, wspace=0.03, hspace=0.06)
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# video frames (plain numpy + cv2: fast enough for hundreds of frames)


def compose_frame(row: PanelRow, *, representation: str = "count", caption: str | None = None,
                  min_panel_width: int = 240) -> np.ndarray:
    """Five panels side by side with titles above and a class legend below; RGB uint8.

    Panels are upscaled by an integer factor (nearest for labels) to at least ``min_panel_width``."""
    import cv2

    hw = row_hw(row)
    scale = max(1, -(-min_panel_width // hw[1]))  # small sensors / tests: integer upscale so text fits
    hw = (hw[0] * scale, hw[1] * scale)
    gap = 4
    panels = []
    for img in _panels(row, representation, hw):
        if img is None:
            img = np.full(hw + (3,), _NA_GREY, np.uint8)
            cv2.putText(img, "n/a", (hw[1] // 2 - 14, hw[0] // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (90, 90, 90), 1,
                        cv2.LINE_AA)
        panels.append(img)
    sep = np.full((hw[0], gap, 3), 255, np.uint8)
    body = np.concatenate([p if i == 0 else np.concatenate([sep, p], 1) for i, p in enumerate(panels)], 1)
    head = np.full((20, body.shape[1], 3), 255, np.uint8)
    for i, t in enumerate(PANEL_TITLES):
        x = i * (hw[1] + gap) + 4
        cv2.putText(head, t, (x, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    if caption:
        size = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.38, 1)[0]
        cv2.putText(head, caption, (body.shape[1] - size[0] - 4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (80, 80, 80), 1,
                    cv2.LINE_AA)
    frame = np.concatenate([head, body, legend_strip(body.shape[1], classes=row.classes)], 0)
    pad_h, pad_w = (-frame.shape[0]) % 2, (-frame.shape[1]) % 2  # H.264 wants even sizes
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=255)
    return frame


class VideoWriter:
    """Streams RGB uint8 frames to .mp4 (H.264 through imageio-ffmpeg) or .gif, one at a time."""

    def __init__(self, path: str | Path, fps: float = 10) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".gif"):
            raise ValueError(f"video {self.path}: use a .mp4 or .gif file name")
        if fps <= 0:
            raise ValueError(f"video fps must be > 0, got {fps}")
        self.fps = float(fps)
        self.frames = 0
        self._writer = None
        self._pending: PendingFile | None = None  # frames go to its temp file; close() commits it

    def append(self, frame: np.ndarray) -> None:
        import imageio.v2 as imageio

        if self._writer is None:
            self._pending = PendingFile(self.path)
            if self.path.suffix.lower() == ".mp4":
                self._writer = imageio.get_writer(self._pending.tmp, fps=self.fps, codec="libx264", quality=7,
                                                  macro_block_size=1, ffmpeg_log_level="error")
            else:
                self._writer = imageio.get_writer(self._pending.tmp, mode="I", duration=1000.0 / self.fps, loop=0)
        self._writer.append_data(np.ascontiguousarray(frame))
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it under its final name."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.frames == 0:
            raise ValueError(f"video {self.path}: no frames to write")
        if self._pending is not None:
            self._pending.commit()
            self._pending = None
        return self.path

    def abort(self) -> None:
        """Drop what was written: nothing partial stays under the final name."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._pending is not None:
            self._pending.abort()
            self._pending = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None and self.frames:
            self.close()
        else:
            self.abort()


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = 10) -> Path:
    """Write RGB uint8 frames to .mp4 (H.264 through imageio-ffmpeg) or .gif; returns the path."""
    with VideoWriter(path, fps) as w:
        for f in frames:
            w.append(f)
        return w.close()


# ---------------------------------------------------------------------------------------------
# plots of evaluate results

_NET_TITLES = {"aps": "APS network", "events": "event network"}


def metrics_figures(results: Mapping[str, Any] | str | Path, out_dir: str | Path, dpi: int = 110) -> list[Path]:
    """Confusion-matrix plot per network and a per-class IoU bar chart from evaluate's result or JSON file."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not isinstance(results, Mapping):
        p = Path(results)
        if not p.is_file():
            raise FileNotFoundError(f"metrics JSON not found: {p}")
        try:
            results = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p} is not JSON ({exc})") from None
    nets = [k for k in ("aps", "events") if isinstance(results.get(k), Mapping)]
    if not nets:
        raise ValueError("metrics: no 'aps' or 'events' block (write one with `evdistill evaluate --json`)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for net in nets:
        block = results[net]
        if "confusion" not in block:
            continue
        cm = ConfusionMatrix.from_dict(block)
        m = cm.matrix.astype(np.float64)
        rows = m.sum(1, keepdims=True)
        norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        fig, ax = plt.subplots(figsize=(6.2, 5.2))
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        k = cm.num_classes
        for i in range(k):
            for j in range(k):
                colour = "white" if norm[i, j] > 0.6 else "black"
                txt = "–" if rows[i, 0] == 0 else f"{100 * norm[i, j]:.1f}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=8, color=colour)
        ax.set_xticks(range(k), cm.class_names, rotation=35, ha="right", fontsize=9)
        ax.set_yticks(range(k), [f"{n} ({int(rows[i, 0]):,})" for i, n in enumerate(cm.class_names)], fontsize=8)
        palette = _palette_of(block, cm)
        if palette is not None:  # the set's colours above its columns and beside its rows
            from matplotlib.patches import Rectangle

            for i, c in enumerate(palette):
                colour = np.asarray(c) / 255.0
                ax.add_patch(Rectangle((i - 0.5, -0.95), 1.0, 0.4, facecolor=colour, edgecolor="0.4", lw=0.5,
                                       clip_on=False))
                ax.add_patch(Rectangle((k - 0.45, i - 0.5), 0.4, 1.0, facecolor=colour, edgecolor="0.4", lw=0.5,
                                       clip_on=False))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("ground truth (labelled pixels)")
        miou = block.get("miou")
        ax.set_title(f"{_NET_TITLES[net]}: confusion, % of each true class\n"
                     f"mIoU {'–' if miou is None else f'{100 * miou:.2f}'}, {block.get('frames', '?')} frames",
                     fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        path = out / f"confusion_{net}.png"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        written.append(path)

    names = list(results[nets[0]]["iou"])
    x = np.arange(len(names))
    width = 0.8 / len(nets)
    colours = {"aps": "#4c72b0", "events": "#dd8452"}
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    for i, net in enumerate(nets):
        b = results[net]
        vals = [b["iou"].get(n) for n in names]
        h = [0 if v is None else 100 * v for v in vals]
        fmt = lambda v: "–" if v is None else f"{100 * v:.2f}"  # noqa: E731
        label = f"{_NET_TITLES[net]} (mIoU {fmt(b.get('miou'))}, all-class {fmt(b.get('miou_all'))})"
        bars = ax.bar(x + (i - (len(nets) - 1) / 2) * width, h, width, label=label, color=colours[net])
        for bar, v in zip(bars, vals):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1, "absent" if v is None else f"{100 * v:.0f}",
                    ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, names)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 110)
    ax.set_title("per-class IoU", fontsize=10)
    ax.legend(fontsize=8, loc="upper right", frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "iou.png"
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    written.append(path)
    return written


def _palette_of(block: Mapping[str, Any], cm: ConfusionMatrix) -> tuple | None:
    """The palette of the class set an evaluate block was scored in (None when unknown)."""
    try:
        cs = class_set(str(block.get("class_set") or "ddd17"))
    except ValueError:
        return None
    return cs.palette if list(cs.names) == list(cm.class_names) else None
