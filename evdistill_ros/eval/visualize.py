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
    visualize_samples(data, *, aps_ckpt=None, event_ckpt=None, format=None, out="viz", num=4,
                      every=1, video=None, fps=10, limit=None, device="cpu", ...) -> list[Path]
        Runs the networks (models preprocessing from checkpoint metadata, eval.evaluate.predict)
        on samples of any supported data format and writes panels.png (the first ``num`` labelled
        samples, every ``every``-th) and, with ``video``, a video of the whole sequence.

Colours: classes.PALETTE (ignore = black); event images from render.event_image (white
background, ON blue, OFF red), the same pictures the ROS overlay shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..atomic import PendingFile
from ..classes import DDD17, IGNORE_COLOR, ClassSet, class_map, class_set, class_set_of
from ..events.spec import DEFAULT_EVENT_INPUT
from ..render import event_image, legend_strip, to_rgb
from .evaluate import (FIXED_REPRESENTATION, detect_format, layout_class_set, load_network, maps_onto, open_samples,
                       predict, scoring_maps)
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


def _row_hw(row: PanelRow) -> tuple[int, int]:
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
    h, w = _row_hw(rows[0])
    panel_w = 2.6
    panel_h = panel_w * h / w
    fig_h = len(rows) * (panel_h + 0.12) + 0.55 + (0.3 if title else 0)
    fig, axes = plt.subplots(len(rows), 5, figsize=(5 * panel_w + 0.4, fig_h), squeeze=False)
    for r, row in enumerate(rows):
        panels = _panels(row, representation, _row_hw(row))
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

    hw = _row_hw(row)
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


# ---------------------------------------------------------------------------------------------
# predictions on data


def _palette_of(block: Mapping[str, Any], cm: ConfusionMatrix) -> tuple | None:
    """The palette of the class set an evaluate block was scored in (None when unknown)."""
    try:
        cs = class_set(str(block.get("class_set") or "ddd17"))
    except ValueError:
        return None
    return cs.palette if list(cs.names) == list(cm.class_names) else None


def visualize_samples(data: str | Path, *, aps_ckpt: str | Path | None = None, event_ckpt: str | Path | None = None,
                      format: str | None = None, out: str | Path = "viz", num: int = 4, every: int = 1,
                      video: str | Path | None = None, fps: float = 10, limit: int | None = None,
                      device: str = "cpu", sample_options: Mapping[str, Any] | None = None,
                      labels_classes: str | None = None, class_map_to: str | None = None,
                      progress: bool = True) -> list[Path]:
    """Five-panel figure of ``num`` labelled samples (``out``/panels.png) and, with ``video``, a
    video of the first ``limit`` samples (all when None). Returns the files written. Class sets
    as in `evaluate`: a network of another set than the labels needs `class_map_to`."""
    from tqdm import tqdm

    if num < 0 or every < 1:
        raise ValueError(f"--num must be >= 0 and --every >= 1, got {num} and {every}")
    if num == 0 and video is None:
        raise ValueError("nothing to do: --num 0 and no --video")
    if not Path(data).exists():
        raise FileNotFoundError(f"data not found: {data}")
    fmt = format or detect_format(data)
    nets = {}
    for modality, ck in (("aps", aps_ckpt), ("events", event_ckpt)):
        if ck is not None:
            nets[modality] = load_network(ck, modality, device)
    data_classes = class_set(labels_classes) if labels_classes else layout_class_set(fmt, sample_options)
    target = class_set(class_map_to) if class_map_to else None
    ckpts = {"aps": aps_ckpt, "events": event_ckpt}
    label_error = ""  # networks whose classes are not the labels': refused at the first label, drawn without
    try:
        maps = {m: scoring_maps(class_set_of(meta), data_classes, target, str(ckpts[m]))
                for m, (_, meta) in nets.items()}
    except ValueError as exc:
        label_error = str(exc)
        target = None if class_map_to else _common_set([class_set_of(meta) for _, meta in nets.values()])
        if target is None:
            raise
        maps = {m: scoring_maps(class_set_of(meta), target, target, str(ckpts[m])) for m, (_, meta) in nets.items()}
    shown = target or next((mp["classes"] for mp in maps.values()), data_classes)
    label_map = class_map(data_classes, target) if target is not None and data_classes != target and not label_error \
        else None

    def in_shown(pred: np.ndarray, modality: str) -> np.ndarray:
        lut = maps[modality].get("pred_map")
        return pred if lut is None else lut[pred]

    event_meta = nets["events"][1] if "events" in nets else None
    if event_meta is not None:
        rep_name = event_meta["representation"]["name"]
    else:
        rep_name = FIXED_REPRESENTATION.get(fmt, DEFAULT_EVENT_INPUT.representation)
    sample_options = dict(sample_options or {})
    if fmt == "bag":  # labels are checked in their own set as they are read
        sample_options["classes"] = data_classes
    samples = open_samples(data, fmt, event_meta, sample_options)

    rows: list[PanelRow] = []
    unlabelled_rows: list[PanelRow] = []  # drawn (ground truth n/a) when the data holds no label at all
    writer = VideoWriter(video, fps) if video is not None else None
    labelled_seen = seen = 0
    t_first: int | None = None
    bar = tqdm(desc="visualize", unit="frame", disable=not progress, total=limit)
    try:
        for i, s in enumerate(samples):
            if (limit is not None and i >= limit) or (writer is None and len(rows) >= num):
                break
            if s.label is not None and label_error:
                raise ValueError(label_error)
            take_row = s.label is not None and len(rows) < num and labelled_seen % every == 0
            take_spare = not take_row and not rows and len(unlabelled_rows) < num and seen % every == 0
            labelled_seen += s.label is not None
            seen += 1
            if not take_row and not take_spare and writer is None:
                continue
            hw = _row_hw(PanelRow(events=s.events, aps=s.aps, label=s.label))
            if s.t_ns is not None and t_first is None:
                t_first = int(s.t_ns)
            # bag sample names carry a 19-digit stamp; time since the first frame reads better
            name = str(s.name) if s.t_ns is None else f"t = {(int(s.t_ns) - t_first) / 1e9:.3f} s"
            label = s.label if s.label is None or label_map is None else label_map[s.label]
            row = PanelRow(name=name, events=s.events, aps=s.aps, label=label, classes=shown)
            if "events" in nets and s.events is not None:
                row.event_pred = in_shown(predict(*nets["events"], [s.events], [hw])[0], "events")
            if "aps" in nets and s.aps is not None:
                row.aps_pred = in_shown(predict(*nets["aps"], [s.aps], [hw])[0], "aps")
            if take_row:
                rows.append(row)
            elif take_spare:
                unlabelled_rows.append(row)
            if writer is not None:
                writer.append(compose_frame(row, representation=rep_name, caption=name))
            bar.update(1)
        if seen == 0:
            raise ValueError(f"{data}: no sample to draw (no APS frame{' in the first --limit' if limit else ''})")
    except BaseException:
        if writer is not None:
            writer.abort()  # interrupted or failed: no truncated video under the final name
        raise
    finally:
        bar.close()
    written: list[Path] = []
    try:
        if num > 0:
            written.append(five_panel_figure(rows or unlabelled_rows, Path(out) / "panels.png",
                                             representation=rep_name))
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        written.append(writer.close())
    return written


def _common_set(nets: list[ClassSet]) -> ClassSet | None:
    """For a recording without labels whose networks predict other classes than the layout's (a
    Cityscapes teacher card beside a DDD17 student, say): the first of the networks' sets that
    every one of them maps onto, so their predictions are drawn side by side. None when none fits."""
    for candidate in nets:
        if all(maps_onto(n, candidate) for n in nets):
            return candidate
    return None
