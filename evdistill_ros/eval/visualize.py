"""`evdistill visualize`: the networks' predictions on any supported data, as the EvDistill
five-panel figure and a video (the drawing itself is eval.figures).

    visualize_samples(data, *, aps_ckpt=None, event_ckpt=None, format=None, out="viz", num=4,
                      every=1, video=None, fps=10, limit=None, device="cpu", ...) -> list[Path]
        Opens the networks and samples as evaluation does (eval.scoring.ScoringSetup), predicts
        through each network's models.Predictor and writes panels.png (the first ``num``
        labelled samples, every ``every``-th) and, with ``video``, a video of the whole sequence.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..events.spec import DEFAULT_EVENT_INPUT
from .figures import PanelRow, VideoWriter, compose_frame, five_panel_figure, row_hw
from .scoring import FIXED_REPRESENTATION, ScoringSetup


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
    setup = ScoringSetup.open(data, aps_ckpt=aps_ckpt, event_ckpt=event_ckpt, format=format, device=device,
                              sample_options=sample_options, labels_classes=labels_classes,
                              class_map_to=class_map_to, unlabelled_ok=True)
    nets, maps, label_map, label_error = setup.networks, setup.maps, setup.label_map, setup.label_error
    shown = setup.shown

    def in_shown(pred: np.ndarray, modality: str) -> np.ndarray:
        lut = maps[modality].get("pred_map")
        return pred if lut is None else lut[pred]

    event_input = setup.event_input
    rep_name = event_input.representation if event_input is not None else \
        FIXED_REPRESENTATION.get(setup.fmt, DEFAULT_EVENT_INPUT.representation)
    samples = setup.samples

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
            hw = row_hw(PanelRow(events=s.events, aps=s.aps, label=s.label))
            if s.t_ns is not None and t_first is None:
                t_first = int(s.t_ns)
            # bag sample names carry a 19-digit stamp; time since the first frame reads better
            name = str(s.name) if s.t_ns is None else f"t = {(int(s.t_ns) - t_first) / 1e9:.3f} s"
            label = s.label if s.label is None or label_map is None else label_map[s.label]
            row = PanelRow(name=name, events=s.events, aps=s.aps, label=label, classes=shown)
            if "events" in nets and s.events is not None:
                row.event_pred = in_shown(nets["events"].predict([s.events], [hw])[0], "events")
            if "aps" in nets and s.aps is not None:
                row.aps_pred = in_shown(nets["aps"].predict([s.aps], [hw])[0], "aps")
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
