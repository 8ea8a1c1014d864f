"""prepare_input / prepare_labels / restore_output against plain numpy references; classes.colorize."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from evdistill_ros.classes import CLASS_NAMES, IGNORE_INDEX, PALETTE, colorize
from evdistill_ros.models import Preprocessor, authors_metadata, prepare_input, prepare_labels, restore_output
from evdistill_ros.models.preprocess import class_argmax


def np_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(C, H, W) -> (C, out_h, out_w), half-pixel centres, edge clamped (align_corners=False)."""
    c, h, w = img.shape
    out = np.empty((c, out_h, out_w), np.float64)
    for i in range(out_h):
        sy = max((i + 0.5) * h / out_h - 0.5, 0.0)
        y0 = min(int(np.floor(sy)), h - 1)
        y1 = min(y0 + 1, h - 1)
        fy = sy - y0
        for j in range(out_w):
            sx = max((j + 0.5) * w / out_w - 0.5, 0.0)
            x0 = min(int(np.floor(sx)), w - 1)
            x1 = min(x0 + 1, w - 1)
            fx = sx - x0
            out[:, i, j] = ((1 - fy) * ((1 - fx) * img[:, y0, x0] + fx * img[:, y0, x1])
                            + fy * ((1 - fx) * img[:, y1, x0] + fx * img[:, y1, x1]))
    return out


def meta(**kw):
    m = {"in_channels": 3, "input_size": None, "preprocessing": {}}
    m.update(kw)
    return m


def test_mono_uint8_repeated_and_scaled(rng):
    img = rng.integers(0, 256, (13, 17), dtype=np.uint8)
    x = prepare_input(img, meta(preprocessing={"channels": "repeat"}))
    assert x.shape == (1, 3, 13, 17) and x.dtype == torch.float32
    for c in range(3):
        np.testing.assert_allclose(x[0, c].numpy(), img / 255.0, rtol=1e-6)
    img16 = rng.integers(0, 65536, (5, 6), dtype=np.uint16)
    x16 = prepare_input(img16, meta(in_channels=1))
    np.testing.assert_allclose(x16[0, 0].numpy(), img16 / 65535.0, rtol=1e-6)


def test_resize_matches_numpy_bilinear(rng):
    emb = rng.random((2, 20, 30)).astype(np.float32) * 7
    m = meta(in_channels=2, input_size={"height": 13, "width": 44}, preprocessing={"resize": "bilinear"})
    x = prepare_input(emb, m)
    assert x.shape == (1, 2, 13, 44)
    np.testing.assert_allclose(x[0].numpy(), np_bilinear(emb.astype(np.float64), 13, 44), atol=1e-5)


def test_pad_scale_clip_mean_std(rng):
    """The authors' event input: 2 polarity maps -> RGB with B = 0, then per-channel normalisation."""
    emb = rng.random((2, 8, 9)).astype(np.float32) * 2
    m = meta(preprocessing={"channels": "pad", "scale": 0.5, "clip": [0.0, 0.8], "mean": [0.1, 0.2, 0.3], "std": [2, 4, 8]})
    x = prepare_input(emb, m)[0].numpy()
    ref = np.concatenate([emb * 0.5, np.zeros((1, 8, 9))]).clip(0, 0.8)
    ref = (ref - np.array([0.1, 0.2, 0.3])[:, None, None]) / np.array([2, 4, 8])[:, None, None]
    np.testing.assert_allclose(x, ref, atol=1e-6)


def test_layouts_batches_and_tensors(rng):
    rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)  # HWC image from cv2 / sensor_msgs
    x = prepare_input(rgb, meta())
    np.testing.assert_allclose(x[0].numpy(), rgb.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    batch = torch.rand(4, 3, 6, 7)
    torch.testing.assert_close(prepare_input(batch, meta()), batch)
    chw_u8 = rng.integers(0, 256, (3, 6, 7), dtype=np.uint8)
    np.testing.assert_allclose(prepare_input(chw_u8, meta(), layout="chw")[0].numpy(), chw_u8 / 255.0, rtol=1e-6)
    grey = prepare_input(rgb, meta(in_channels=1, preprocessing={"channels": "mean"}))
    np.testing.assert_allclose(grey[0, 0].numpy(), rgb.mean(2) / 255.0, rtol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match=r"input has 2 channel\(s\) but the network takes 3"):
        prepare_input(np.zeros((2, 4, 4), np.float32), meta())
    with pytest.raises(ValueError, match="2-D, 3-D or 4-D"):
        prepare_input(np.zeros(5, np.float32), meta())
    with pytest.raises(ValueError, match="layout hwc needs a 3-D input"):
        prepare_input(np.zeros((1, 3, 4, 4), np.float32), meta(), layout="hwc")
    with pytest.raises(ValueError, match="resize must be one of"):
        Preprocessor.from_metadata(meta(preprocessing={"resize": "lanczos"}))
    with pytest.raises(ValueError, match="mean has 2 values for 3 channels"):
        prepare_input(np.zeros((3, 4, 4), np.float32), meta(preprocessing={"mean": [0, 1]}))


def test_authors_metadata_pipeline(rng):
    """An EvDistill test PNG half (346x200 RGB uint8) becomes a 3x256x512 tensor in [0, 1]."""
    half = rng.integers(0, 256, (200, 346, 3), dtype=np.uint8)
    x = prepare_input(half, authors_metadata("events"))
    assert x.shape == (1, 3, 256, 512) and x.min() >= 0 and x.max() <= 1
    aps = rng.integers(0, 256, (260, 346), dtype=np.uint8)
    xa = prepare_input(aps, authors_metadata("aps"))
    assert xa.shape == (1, 3, 256, 512)
    assert torch.equal(xa[:, 0], xa[:, 2])


def test_labels_nearest_matches_numpy(rng):
    lab = rng.integers(0, 6, (2, 20, 31)).astype(np.uint8)
    lab[0, 3, :] = IGNORE_INDEX
    out = prepare_labels(lab, {"input_size": {"height": 9, "width": 50}}).numpy()
    rows = np.floor(np.arange(9) * 20 / 9).astype(int)
    cols = np.floor(np.arange(50) * 31 / 50).astype(int)
    np.testing.assert_array_equal(out, lab[:, rows][:, :, cols])
    assert out.dtype == np.int64
    np.testing.assert_array_equal(prepare_labels(lab[0], {}).numpy(), lab[:1])


def test_restore_output(rng):
    logits = torch.from_numpy(rng.standard_normal((2, 6, 11, 13)).astype(np.float32))
    same = restore_output(logits, (11, 13))
    np.testing.assert_array_equal(same, logits.numpy().argmax(1))
    assert same.dtype == np.uint8 and same.shape == (2, 11, 13)
    up = restore_output(logits, (23, 9))
    ref = np.stack([np_bilinear(logits[b].numpy().astype(np.float64), 23, 9).argmax(0) for b in range(2)])
    assert up.shape == (2, 23, 9)
    assert (up == ref).mean() > 0.999  # float ties aside, the same argmax


@pytest.mark.parametrize("shape", [(1, 6, 120, 160), (3, 2, 5, 7), (2, 19, 1, 1), (1, 1, 4, 4), (2, 256, 3, 3)])
def test_class_argmax_is_numpys(rng, shape):
    # random logits, then ties everywhere (small integers): the first largest class wins, as in np.argmax;
    # -inf, +inf, the largest float32s and signed zeros in the mix
    for logits in (rng.standard_normal(shape).astype(np.float32),
                   rng.integers(-2, 3, shape).astype(np.float32)):
        np.testing.assert_array_equal(class_argmax(logits), logits.argmax(1).astype(np.uint8))
    edge = rng.choice(np.array([-np.inf, np.inf, np.finfo(np.float32).max, -np.finfo(np.float32).max, 0.0, -0.0, 1.0],
                               np.float32), shape)
    np.testing.assert_array_equal(class_argmax(edge), edge.argmax(1).astype(np.uint8))
    strided = np.asfortranarray(rng.standard_normal(shape).astype(np.float64))  # any layout and dtype in
    np.testing.assert_array_equal(class_argmax(strided), strided.astype(np.float32).argmax(1).astype(np.uint8))
    assert class_argmax(np.zeros((0,) + shape[1:], np.float32)).shape == (0,) + shape[2:]
    with pytest.raises(ValueError, match="257 classes do not fit uint8"):
        class_argmax(np.zeros((1, 257, 2, 2), np.float32))


def test_colorize_matches_loop(rng):
    lab = rng.integers(0, 6, (7, 9)).astype(np.uint8)
    lab[2, 3] = IGNORE_INDEX
    rgb = colorize(lab)
    assert rgb.shape == (7, 9, 3) and rgb.dtype == np.uint8
    for i in range(7):
        for j in range(9):
            want = (0, 0, 0) if lab[i, j] == IGNORE_INDEX else tuple(PALETTE[lab[i, j]])
            assert tuple(rgb[i, j]) == want
    assert len(CLASS_NAMES) == len(PALETTE) == 6
    with pytest.raises(ValueError, match="label 6 is outside 0..5"):
        colorize(np.array([[6]]))
    with pytest.raises(ValueError, match="label -1 is outside"):
        colorize(np.array([-1]))
    with pytest.raises(ValueError, match="integer array"):
        colorize(np.zeros(3))
