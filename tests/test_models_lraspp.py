"""LR-ASPP, the CPU student: the same outputs and features as DeepLabV3+, a checkpoint that
rebuilds it, an ONNX export that agrees with torch, and a student that learns."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evdistill_ros.models import LRASPP, build_model, load_checkpoint, save_checkpoint
from evdistill_ros.models.export import export_onnx


def _net(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("lraspp", "mobilenetv2", in_channels=2, num_classes=6, output_stride=kw.pop("os", 16),
                       width_mult=0.5, head_channels=32, **kw)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_outputs_and_features_match_deeplab_keys_at_any_size(output_stride):
    net = _net(os=output_stride, with_reconstruction=True).eval()
    deeplab = build_model("deeplabv3plus", "mobilenetv2", in_channels=2, num_classes=6, width_mult=0.5,
                          aspp_channels=16, decoder_channels=16, with_reconstruction=True).eval()
    x = torch.randn(2, 2, 61, 93)  # odd sizes: the stride-4 grid does not divide them
    with torch.no_grad():
        out, ref = net(x, return_features=True), deeplab(x, return_features=True)
        assert net(x).shape == (2, 6, 61, 93)
    assert out.keys() == ref.keys()
    assert out["logits_lowres"].shape == ref["logits_lowres"].shape  # stride 4, as the KD losses expect
    assert out["reconstruction"].shape == (2, 1, 61, 93)
    assert out["aspp"].shape[-2:] == out["high_level"].shape[-2:]
    assert torch.allclose(out["logits"], net(x), atol=1e-5)
    # logits = upsampled (high-level classifier + low-level classifier), computed independently here
    with torch.no_grad():
        high, low = net.backbone(x)
        gated = net.project(high) * torch.sigmoid(net.gate[1](high.mean((2, 3), keepdim=True)))
        up = F.interpolate(gated, size=low.shape[-2:], mode="bilinear", align_corners=False)
        want = net.classify_high(up) + net.classify_low(low)
    assert torch.allclose(out["logits_lowres"], want, atol=1e-5)


def test_options_of_another_head_are_refused_in_one_line():
    with pytest.raises(ValueError, match="lraspp has no decoder_channels: set it to null"):
        build_model("lraspp", "mobilenetv2", decoder_channels=128)
    with pytest.raises(ValueError, match="head_channels must be >= 1"):
        LRASPP("mobilenetv2", head_channels=0)


def test_checkpoint_rebuilds_it_without_the_training_head(tmp_path):
    net = _net(with_reconstruction=True).eval()
    path = save_checkpoint(tmp_path / "s.pt", net, {"representation": "aps"})
    loaded, meta = load_checkpoint(path)
    assert isinstance(loaded, LRASPP) and meta["arch"] == "lraspp"
    x = torch.randn(1, 2, 48, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_onnx_export_agrees_with_torch_and_does_not_warn(tmp_path, recwarn):
    report = export_onnx(save_checkpoint(tmp_path / "s.pt", _net().eval(), {"representation": "aps"}),
                         tmp_path / "s.onnx")
    assert report.argmax_agreement >= 0.999, report.summary()
    # the input check ran inside the trace: every export (and auto's first load) printed a TracerWarning
    assert not [w for w in recwarn if issubclass(w.category, torch.jit.TracerWarning)]
    with pytest.raises(ValueError, match=r"model input must be \(B, 2, H, W\), got \(1, 3, 8, 8\)"):
        _net()(torch.zeros(1, 3, 8, 8))  # outside a trace the check still holds


def test_it_learns_a_pattern_far_above_chance():
    """60 steps on a fixed labelling (class = which quadrant) take pixel accuracy far above 1/4."""
    torch.manual_seed(0)
    net = build_model("lraspp", "mobilenetv2", in_channels=2, num_classes=4, width_mult=0.35, head_channels=16)
    rng = np.random.default_rng(0)
    labels = torch.zeros(4, 32, 32, dtype=torch.long)
    labels[:, :16, 16:], labels[:, 16:, :16], labels[:, 16:, 16:] = 1, 2, 3
    x = torch.from_numpy(rng.standard_normal((4, 2, 32, 32)).astype(np.float32))
    x[:, 0] += labels.float()  # the class is readable from the input
    opt = torch.optim.AdamW(net.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(net(x), labels).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(x).argmax(1) == labels).float().mean())
    assert accuracy > 0.5, accuracy
