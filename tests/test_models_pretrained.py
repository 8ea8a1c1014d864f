"""Pretrained weights into networks with any number of input channels (set_in_channels)."""
from __future__ import annotations

import pytest
import torch

from evdistill_ros.models import build_model, save_checkpoint
from evdistill_ros.models.pretrained import adapt_first_conv, load_pretrained


@pytest.fixture(scope="module")
def rgb_backbone_file(tmp_path_factory):
    """A saved 3-channel ResNet-18 backbone state_dict (what an ImageNet file holds)."""
    torch.manual_seed(0)
    net = build_model("deeplabv3plus", "resnet18", in_channels=3, num_classes=6)
    path = tmp_path_factory.mktemp("w") / "resnet18_rgb.pth"
    torch.save(net.backbone.state_dict(), path)
    return path, net


@pytest.mark.parametrize("channels", [1, 2, 3, 5])
def test_rgb_backbone_into_any_channel_count(rgb_backbone_file, channels):
    path, rgb = rgb_backbone_file
    model = build_model("deeplabv3plus", "resnet18", in_channels=channels, num_classes=6)
    report = load_pretrained(model, path)
    w_rgb = rgb.backbone.conv1.weight
    w = model.backbone.conv1.weight
    assert w.shape[1] == channels
    if channels == 3:
        assert not report.adapted
        assert torch.equal(w, w_rgb)
    else:
        assert report.adapted == [f"backbone.conv1.weight: 3 -> {channels} channels"]
    if channels == 1:  # a grey image gives the activations its RGB copy gives the RGB conv
        x = torch.rand(1, 1, 16, 16)
        out = torch.nn.functional.conv2d(x, w)
        ref = torch.nn.functional.conv2d(x.expand(-1, 3, -1, -1), w_rgb)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # every other backbone tensor is the file's; the heads stay at their init and are reported
    for k, v in rgb.backbone.state_dict().items():
        if k != "conv1.weight":
            assert torch.equal(model.backbone.state_dict()[k], v), k
    assert report.not_loaded and all(not k.startswith("backbone.") for k in report.not_loaded)
    assert "tensors loaded" in report.summary()


def test_adapt_first_conv_rules():
    w = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).view(2, 3, 1, 1)
    torch.testing.assert_close(adapt_first_conv(w, 1), w.sum(1, keepdim=True))
    five = adapt_first_conv(w, 5)
    torch.testing.assert_close(five, w[:, [0, 1, 2, 0, 1]] * 0.6)


def test_whole_network_checkpoint_initialises_a_student_with_other_classes(tmp_path):
    teacher = build_model("deeplabv3plus", "mobilenetv2", in_channels=1, num_classes=6, width_mult=0.25)
    path = save_checkpoint(tmp_path / "teacher.pt", teacher, {"representation": "aps"})
    student = build_model("deeplabv3plus", "mobilenetv2", in_channels=5, num_classes=11, width_mult=0.25)
    report = load_pretrained(student, path)
    assert report.adapted and report.shape_mismatch  # input conv adapted, 6 -> 11 class layer kept at init
    assert any("11" in s for s in report.shape_mismatch)


def test_nothing_fits_is_an_error(tmp_path):
    p = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, p)
    with pytest.raises(ValueError, match="no tensor fits"):
        load_pretrained(build_model("deeplabv3plus", "resnet18", in_channels=2, num_classes=6), p)
    p.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_pretrained(build_model("deeplabv3plus", "resnet18", in_channels=2, num_classes=6), p)
