"""build_model: shapes at DAVIS sizes and odd sizes, feature dict, gradients, distillation heads."""
from __future__ import annotations

import math

import pytest
import numpy as np
import torch

from evdistill_ros.models import A2EGenerator, BACKBONES, build_a2e, build_model


def _stride4(n: int) -> int:
    """Size after the stride-2 7x7 conv (pad 3) and stride-2 3x3 max pool (pad 1)."""
    return math.ceil(math.ceil(n / 2) / 2)


@pytest.mark.parametrize("backbone,in_ch,hw", [
    ("resnet18", 2, (200, 346)),
    ("resnet18", 3, (260, 346)),
    ("mobilenetv2", 2, (260, 346)),
    ("mobilenetv2", 1, (33, 47)),
    ("resnet34", 5, (31, 17)),
    ("resnet50", 3, (1, 1)),
])
def test_logits_at_input_size(backbone, in_ch, hw):
    torch.manual_seed(0)
    model = build_model(backbone=backbone, in_channels=in_ch, num_classes=6).eval()
    with torch.no_grad():
        out = model(torch.rand(1, in_ch, *hw))
    assert out.shape == (1, 6, *hw) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("backbone,low_ch,high_ch", [("resnet18", 64, 512), ("mobilenetv2", 24, 320)])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_feature_dict(backbone, low_ch, high_ch, output_stride):
    h, w = 45, 61
    model = build_model(backbone=backbone, in_channels=2, num_classes=4, output_stride=output_stride).eval()
    with torch.no_grad():
        x = torch.rand(2, 2, h, w)
        f = model(x, return_features=True)
        plain = model(x)
    hs, ws = _stride4(h), _stride4(w)
    assert f["low_level"].shape == (2, low_ch, hs, ws)
    # stride 8 / 16: two more stride-2 steps of (k3, p1) convs -> ceil halvings
    halvings = {8: 1, 16: 2}[output_stride]
    hh, wh = hs, ws
    for _ in range(halvings):
        hh, wh = math.ceil(hh / 2), math.ceil(wh / 2)
    assert f["high_level"].shape == (2, high_ch, hh, wh)
    assert f["aspp"].shape == (2, 256, hh, wh)
    assert f["decoder"].shape == (2, 256, hs, ws)
    assert f["logits_lowres"].shape == (2, 4, hs, ws)
    assert f["logits"].shape == (2, 4, h, w)
    assert "reconstruction" not in f  # off unless asked for
    torch.testing.assert_close(f["logits"], plain)
    # the classifier is a 1x1 conv on the decoder features
    torch.testing.assert_close(model.head(f["decoder"]), f["logits_lowres"])


def test_wrong_input_channels_is_a_clear_error():
    model = build_model(backbone="mobilenetv2", in_channels=2).eval()
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\).*\(1, 3, 20, 20\)"):
        model(torch.rand(1, 3, 20, 20))
    with pytest.raises(ValueError, match="unknown backbone 'resnet152'"):
        build_model(backbone="resnet152")
    with pytest.raises(ValueError, match="output_stride"):
        build_model(backbone="resnet18", output_stride=4)
    with pytest.raises(ValueError, match="unknown build_model option"):
        build_model(backbone="resnet18", dropout=0.3)


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv2"])
def test_gradients_reach_every_parameter(backbone):
    torch.manual_seed(0)
    model = build_model(backbone=backbone, in_channels=2, num_classes=6, with_reconstruction=True,
                        reconstruction_channels=1).train()
    x = torch.rand(2, 2, 37, 53)
    f = model(x, return_features=True)
    assert f["reconstruction"].shape == (2, 1, 37, 53)
    weights = torch.randn(1, 6, 1, 1)
    loss = (f["logits"] * weights).mean() + ((f["reconstruction"] - 0.5) ** 2).mean()
    loss.backward()
    starved = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not starved, f"no gradient for {starved[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_reconstruction_of_the_first_images_only():
    """reconstruct=n gives the first n images' reconstruction of a full call; 0 skips it."""
    torch.manual_seed(0)
    model = build_model(backbone="mobilenetv2", in_channels=2, num_classes=6, width_mult=0.25, aspp_channels=16,
                        decoder_channels=16, with_reconstruction=True).eval()
    x = torch.rand(4, 2, 33, 41)
    with torch.no_grad():
        full, first = model(x, return_features=True), model(x, return_features=True, reconstruct=2)
        none = model(x, return_features=True, reconstruct=0)
    assert first["reconstruction"].shape == (2, 1, 33, 41) and "reconstruction" not in none
    torch.testing.assert_close(first["reconstruction"], full["reconstruction"][:2])
    assert torch.equal(first["logits"], full["logits"]) and torch.equal(none["logits"], full["logits"])


def test_reconstruction_of_the_first_images_trains_as_the_full_head():
    """EvDistill reconstructs the real half of a real + crafted batch only (reconstruct=B). The
    head's BatchNorm layers still see the whole batch, so training with it is the training with
    the full head whose crafted-half output is discarded: the same loss curve and weights on a
    fixed seed (float tolerance), not only the same outputs in eval mode."""
    # one thread: with two, the weight gradients of 4 and of 2 reconstructed images split their sums
    # differently, and four momentum steps grew that to 2e-3 on a loaded 2-core machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_both_ways()
    finally:
        torch.set_num_threads(threads)


def _train_both_ways() -> None:
    import copy

    torch.manual_seed(0)
    base = build_model(backbone="mobilenetv2", in_channels=2, num_classes=6, width_mult=0.25, aspp_channels=16,
                       decoder_channels=16, with_reconstruction=True).train()
    data = [(torch.rand(4, 2, 32, 48), torch.rand(2, 1, 32, 48)) for _ in range(4)]
    curves, models = [], []
    for reconstruct in (None, 2):
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        curve = []
        for step, (x, target) in enumerate(data):
            torch.manual_seed(100 + step)  # the decoder's dropout draws the same masks in both runs
            out = model(x, return_features=True, reconstruct=reconstruct)
            loss = (out["reconstruction"][:2] - target).abs().mean() + out["logits"].square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append(loss.item())
        curves.append(curve)
        models.append(model)
    assert curves[0][0] != curves[0][-1]  # it trained
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-5)
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


def test_batch_of_one_trains():
    """The ASPP image-pool BatchNorm sees one value per channel for a batch of one; it must not raise."""
    model = build_model(backbone="mobilenetv2", in_channels=2).train()
    model(torch.rand(1, 2, 40, 40)).sum().backward()


def test_reconstruction_head_range_and_three_channels():
    model = build_model(backbone="resnet18", in_channels=2, with_reconstruction=True, reconstruction_channels=3).eval()
    with torch.no_grad():
        rec = model(torch.rand(1, 2, 29, 43) * 10, return_features=True)["reconstruction"]
    assert rec.shape == (1, 3, 29, 43)
    assert rec.min() >= 0 and rec.max() <= 1


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "none"])
def test_a2e_generator(activation):
    torch.manual_seed(0)
    gen = build_a2e(in_channels=1, out_channels=2, base_channels=8, depth=2, activation=activation)
    assert isinstance(gen, A2EGenerator)
    x = torch.rand(3, 1, 37, 51)
    y = gen(x)
    assert y.shape == (3, 2, 37, 51)
    if activation == "sigmoid":
        assert y.min() >= 0 and y.max() <= 1
    elif activation == "relu":
        assert y.min() >= 0
    else:
        assert y.min() < 0  # signed output for voxel grids
    y.square().mean().backward()
    assert all(p.grad is not None for p in gen.parameters())
    with pytest.raises(ValueError, match=r"A2E input must be \(B, 1, H, W\)"):
        gen(torch.rand(1, 3, 8, 8))


def test_backbone_list():
    assert set(BACKBONES) == {"resnet18", "resnet34", "resnet50", "resnet101", "mobilenetv2"}
