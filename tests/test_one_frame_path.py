"""Training and inference give a network the same input tensor for the same frame.

Regression test for the drift between the training cache (BT.601 grey, mono16 // 257,
cv2 INTER_AREA resize) and inference preprocessing (channel mean, / 65535, bilinear resize):
the same rgb8, bgr8, mono8 and mono16 frames go through training extraction (bag -> pair
cache -> PairDataset -> the trainer's Preprocessor) and through inference (the image message
decoded as the node decodes it -> the checkpoint's Preprocessor), and the tensors must be
identical, with and without resizing. The same holds for event embeddings.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from evdistill_ros import frames
from evdistill_ros.distill import config as C
from evdistill_ros.io.pair_writer import extract_pairs
from evdistill_ros.distill.dataset import PairDataset
from evdistill_ros.distill.methods import method_for
from evdistill_ros.distill.trainer import checkpoint_card, norm_stats
from evdistill_ros.events import Events
from evdistill_ros.io.bag import iter_images
from evdistill_ros.io.bag_writer import BagWriter
from evdistill_ros.io.pair_cache import open_cache
from evdistill_ros.io.samples import iter_bag_samples
from evdistill_ros.models import Preprocessor, build_model
from evdistill_ros.models.predictor import Predictor

H, W = 30, 44
T0 = 10**18
FRAME_NS = 50_000_000


def _write(path, encoding: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with BagWriter(path) as bag:
        for k in range(4):
            t = T0 + k * FRAME_NS
            n = 400
            ev = Events(rng.integers(0, W, n), rng.integers(0, H, n), np.sort(rng.integers(t - FRAME_NS, t, n)),
                        rng.integers(0, 2, n))
            bag.write_events("/davis/left/events", ev, H, W, stamp_ns=t)
            if encoding == "mono16":
                img = rng.integers(0, 65536, (H, W), dtype=np.uint16)
            elif encoding == "mono8":
                img = rng.integers(0, 256, (H, W), dtype=np.uint8)
            else:
                img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            bag.write_image("/davis/left/image_raw", t, img, encoding)
            bag.write_image("/davis/left/labels", t, rng.integers(0, 6, (H, W), dtype=np.uint8), "mono8")


@pytest.mark.parametrize("frame", ["gray", "rgb"])
@pytest.mark.parametrize("resize", [None, [20, 26], [41, 57]], ids=["native", "shrink", "grow"])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "mono16"])
def test_training_and_inference_prepare_identical_tensors(tmp_path, encoding, resize, frame):
    bag = tmp_path / f"{encoding}.bag"
    _write(bag, encoding, seed=len(encoding))
    cfg = C.load_config(None, [{"data": {"cache_dir": str(tmp_path / "cache"), "resize": resize,
                                         "representation": "voxel_grid", "representation_params": {"bins": 3},
                                         "frame": frame}}])
    cache = open_cache(extract_pairs(cfg.data.pair_source([str(bag)]), cfg.data.cache_dir, progress=False, log=lambda s: None))
    stats = norm_stats(cache, np.arange(len(cache)))
    dataset = PairDataset(cache)  # no augmentation: what validation and a plain training step see
    frames_on_wire = [frames.canonical(m.image, m.encoding) for m in iter_images(bag, "/davis/left/image_raw")]
    samples = list(iter_bag_samples(bag, event_input=cache.event_input))
    for stage, in_channels in (("teacher", frames.frame_channels(frame)), ("student", cache.meta["channels"])):
        method = method_for(stage, "supervised", False, cfg.student)
        model = build_model("deeplabv3plus", "mobilenetv2", in_channels, 6, width_mult=0.25)
        card = checkpoint_card(method, model, cfg, cache, stats, {})
        train_prep = Preprocessor.for_card(card, any_size=True)  # as the trainer builds it
        infer_prep = Predictor.from_model(model, card).preprocess  # as the node and evaluation run it
        for k in range(len(cache)):
            item = dataset[k]
            if stage == "teacher":
                trained = train_prep(item["aps"][None], layout="bchw")
                served = infer_prep(frames_on_wire[k])
            else:
                trained = train_prep(item["events"][None], layout="bchw")
                served = infer_prep(samples[k].events)
            assert trained.shape == served.shape, (stage, k)
            assert torch.equal(trained, served), f"{stage} frame {k}: max diff {(trained - served).abs().max()}"


def test_mono16_and_colour_conversion_is_the_documented_one():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    np.testing.assert_array_equal(frames.to_gray_u8(rgb), [[76, 150, 29, 18]])  # BT.601, rounded
    np.testing.assert_array_equal(frames.to_gray_u8(np.array([[0, 255, 256, 65535]], np.uint16)), [[0, 0, 1, 255]])
    bgr = rgb[..., ::-1]
    np.testing.assert_array_equal(frames.canonical(bgr, "bgr8"), rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], 2)
    np.testing.assert_array_equal(frames.canonical(rgba, "rgba8"), rgb)
    with pytest.raises(ValueError, match="dtype"):
        frames.to_gray_u8(np.zeros((2, 2), np.float32))
    grey = np.array([[0, 255, 256, 65535]], np.uint16)  # a grey camera under a colour teacher: repeated
    np.testing.assert_array_equal(frames.to_rgb_u8(grey), np.repeat(frames.to_u8(grey)[..., None], 3, 2))
    np.testing.assert_array_equal(frames.to_rgb_u8(rgba), rgb)
    np.testing.assert_array_equal(frames.to_frame(rgb, "rgb"), rgb)
    with pytest.raises(ValueError, match="frame mode"):
        frames.to_frame(rgb, "bgr")


def test_bag_samples_open_the_bag_once(tmp_path, monkeypatch):
    """One Bag per bag (as rosbags' AnyReader), not one reader per query (topics, preset, size,
    stamps, events, frames, labels each reopened it)."""
    from evdistill_ros.io import bag as bag_module

    path = tmp_path / "mono8.bag"
    _write(path, "mono8", seed=3)
    opened = []
    real = bag_module.open_reader
    monkeypatch.setattr(bag_module, "open_reader", lambda p: opened.append(p) or real(p))
    samples = list(iter_bag_samples(path))
    assert len(samples) == 4 and all(s.label is not None for s in samples)
    assert len(opened) == 1
