"""`evdistill visualize`: five-panel figures, video frames and files, metric plots."""
from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from evdistill_ros.classes import PALETTE, colorize
from evdistill_ros.eval.metrics import ConfusionMatrix
from evdistill_ros.eval.figures import PanelRow, compose_frame, five_panel_figure, metrics_figures, write_video
from evdistill_ros.io.evdistill_png import write_evdistill_sample
from evdistill_ros.models import build_model, save_checkpoint

H, W = 20, 30


def row(seed=0, with_aps_pred=True):
    rng = np.random.default_rng(seed)
    lab = np.zeros((H, W), np.uint8)
    lab[:, 10:20] = 5
    lab[:3] = 255
    return PanelRow(name=f"s{seed}", events=rng.poisson(0.5, (3, H, W)).astype(np.float32),
                    event_pred=rng.integers(0, 6, (H, W)).astype(np.uint8),
                    aps=rng.integers(0, 256, (H, W), dtype=np.uint8),
                    aps_pred=lab.copy() if with_aps_pred else None, label=lab)


def test_compose_frame_holds_the_panels():
    r = row()
    f = compose_frame(r, representation="evdistill_2ch", caption="s0", min_panel_width=60)
    scale = 2  # 30 px panels upscaled to >= 60
    assert f.dtype == np.uint8 and f.shape[0] % 2 == 0 and f.shape[1] % 2 == 0
    top, gap = 20, 4
    x5 = 4 * (W * scale + gap)
    gt = f[top:top + H * scale, x5:x5 + W * scale]
    np.testing.assert_array_equal(gt, np.kron(colorize(r.label), np.ones((scale, scale, 1), np.uint8)))
    x2 = 1 * (W * scale + gap)
    np.testing.assert_array_equal(f[top:top + H * scale, x2:x2 + W * scale],
                                  np.kron(colorize(r.event_pred), np.ones((scale, scale, 1), np.uint8)))
    # a missing APS prediction is a grey "n/a" panel, not black labels
    g = compose_frame(row(with_aps_pred=False), min_panel_width=30)
    x4 = 3 * (W + gap)
    assert np.median(g[20:20 + H, x4:x4 + W]) == 200


def test_five_panel_figure_png(tmp_path):
    p = five_panel_figure([row(0), row(1, with_aps_pred=False)], tmp_path / "f" / "panels.png",
                          representation="evdistill_2ch", title="tiny")
    img = imageio.imread(p)[..., :3]
    assert img.shape[1] > img.shape[0] > 100
    colours = {tuple(c) for c in img.reshape(-1, 3)[:: 7].tolist()}
    assert tuple(PALETTE[5]) in colours and tuple(PALETTE[0]) in colours  # label panels and legend
    with pytest.raises(ValueError, match="no samples"):
        five_panel_figure([], tmp_path / "x.png")


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_write_video_round_trip(tmp_path, suffix):
    frames = [compose_frame(row(i), min_panel_width=60) for i in range(3)]
    p = write_video(frames, tmp_path / f"v{suffix}", fps=5)
    if suffix == ".gif":
        back = imageio.mimread(p)
    else:
        reader = imageio.get_reader(p)
        back = [reader.get_data(i) for i in range(reader.count_frames())]
        reader.close()
    assert len(back) == 3 and back[0].shape[:2] == frames[0].shape[:2]
    if suffix == ".gif":  # lossless palette image: the label panel comes back exactly
        np.testing.assert_array_equal(back[1][..., :3][20:60, -60:], frames[1][20:60, -60:])
    with pytest.raises(ValueError, match="mp4 or .gif"):
        write_video(frames, tmp_path / "v.avi")
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "empty.gif")


def test_metrics_figures_from_json(tmp_path):
    rng = np.random.default_rng(0)
    res = {}
    for net in ("aps", "events"):
        cm = ConfusionMatrix()
        lab = rng.integers(0, 5, 500)  # class 5 absent
        cm.update(np.where(rng.random(500) < 0.7, lab, rng.integers(0, 5, 500)), lab)
        res[net] = dict(cm.to_dict(), frames=3)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(res))
    files = metrics_figures(path, tmp_path / "plots")
    assert sorted(f.name for f in files) == ["confusion_aps.png", "confusion_events.png", "iou.png"]
    for f in files:
        assert imageio.imread(f).shape[0] > 200
    with pytest.raises(ValueError, match="no 'aps' or 'events'"):
        metrics_figures({"teacher": {}}, tmp_path)
    with pytest.raises(FileNotFoundError):
        metrics_figures(tmp_path / "missing.json", tmp_path)


def test_cli_visualize_png_dataset(tmp_path, capsys):
    from evdistill_ros.cli import main

    rng = np.random.default_rng(0)
    for i in range(3):
        lab = rng.integers(0, 6, (H, W)).astype(np.uint8)
        write_evdistill_sample(tmp_path / "png", "test", f"{i:04d}", rng.poisson(0.5, (2, H, W)),
                               rng.integers(0, 256, (H, W), dtype=np.uint8), lab)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        net = build_model(backbone="mobilenetv2", in_channels=3, aspp_channels=16, decoder_channels=16)
        ck = save_checkpoint(tmp_path / "ev.pt", net, {"representation": {"name": "evdistill_2ch", "params": {},
                                                                          "window_ns": 50_000_000}})
        rc = main(["visualize", "--data", str(tmp_path / "png"), "--event-ckpt", str(ck), "--out", str(tmp_path / "o"),
                   "--num", "2", "--video", str(tmp_path / "o" / "seq.gif"), "--fps", "4"])
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "o" / "panels.png"), str(tmp_path / "o" / "seq.gif")]
    assert len(imageio.mimread(tmp_path / "o" / "seq.gif")) == 3
    rc = main(["visualize", "--out", str(tmp_path)])
    assert rc == 1 and "--data" in capsys.readouterr().err
