"""The EvDistill authors' released networks load into build_model's DeepLabv3+ and give the same logits.

The reference below re-implements, compactly and in their module/attribute names, the
DeepLab(backbone='resnet', output_stride=16, num_classes=6) of jfzhang95/pytorch-deeplab-xception
as used by the EvDistill code: ResNet-101 with multi-grid layer4, ASPP 6/12/18 + image pool,
decoder with a 48-channel low-level projection, align_corners=True resampling. It is randomly
initialised (with non-trivial BatchNorm statistics), saved as their training code saves it, and
read back through load_checkpoint.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evdistill_ros.models import load_checkpoint
from evdistill_ros.models.deeplab import ASPP


# ---- reference: their layout ----------------------------------------------------------------
class RefBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, dilation=dilation, padding=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        return self.relu(out + residual)


class RefResNet(nn.Module):
    def __init__(self, layers=(3, 4, 23, 3)):
        super().__init__()
        self.inplanes = 64
        strides, dilations, mg = [1, 2, 2, 1], [1, 1, 1, 2], [1, 2, 4]  # output_stride 16
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0], strides[0], dilations[0])
        self.layer2 = self._make_layer(128, layers[1], strides[1], dilations[1])
        self.layer3 = self._make_layer(256, layers[2], strides[2], dilations[2])
        self.layer4 = self._make_mg_unit(512, mg, strides[3], dilations[3])

    def _downsample(self, planes, stride):
        if stride != 1 or self.inplanes != planes * 4:
            return nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                                 nn.BatchNorm2d(planes * 4))
        return None

    def _make_layer(self, planes, blocks, stride, dilation):
        layers = [RefBottleneck(self.inplanes, planes, stride, dilation, self._downsample(planes, stride))]
        self.inplanes = planes * 4
        layers += [RefBottleneck(self.inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _make_mg_unit(self, planes, blocks, stride, dilation):
        layers = [RefBottleneck(self.inplanes, planes, stride, blocks[0] * dilation, self._downsample(planes, stride))]
        self.inplanes = planes * 4
        layers += [RefBottleneck(self.inplanes, planes, 1, b * dilation) for b in blocks[1:]]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        return self.layer4(self.layer3(self.layer2(low))), low


class RefASPPModule(nn.Module):
    def __init__(self, inplanes, planes, kernel_size, padding, dilation):
        super().__init__()
        self.atrous_conv = nn.Conv2d(inplanes, planes, kernel_size, 1, padding, dilation, bias=False)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.atrous_conv(x)))


class RefASPP(nn.Module):
    def __init__(self, inplanes=2048):
        super().__init__()
        d = [1, 6, 12, 18]
        self.aspp1 = RefASPPModule(inplanes, 256, 1, 0, d[0])
        self.aspp2 = RefASPPModule(inplanes, 256, 3, d[1], d[1])
        self.aspp3 = RefASPPModule(inplanes, 256, 3, d[2], d[2])
        self.aspp4 = RefASPPModule(inplanes, 256, 3, d[3], d[3])
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Conv2d(inplanes, 256, 1, stride=1, bias=False),
                                             nn.BatchNorm2d(256), nn.ReLU())
        self.conv1 = nn.Conv2d(1280, 256, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(256)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        x1, x2, x3, x4 = self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x)
        x5 = F.interpolate(self.global_avg_pool(x), size=x4.size()[2:], mode="bilinear", align_corners=True)
        return self.dropout(self.relu(self.bn1(self.conv1(torch.cat((x1, x2, x3, x4, x5), dim=1)))))


class RefDecoder(nn.Module):
    def __init__(self, num_classes, low_level_inplanes=256):
        super().__init__()
        self.conv1 = nn.Conv2d(low_level_inplanes, 48, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(48)
        self.relu = nn.ReLU()
        self.last_conv = nn.Sequential(
            nn.Conv2d(304, 256, kernel_size=3, stride=1, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(), nn.Dropout(0.5),
            nn.Conv2d(256, 256, kernel_size=3, stride=1, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(), nn.Dropout(0.1),
            nn.Conv2d(256, num_classes, kernel_size=1, stride=1))

    def forward(self, x, low_level_feat):
        low_level_feat = self.relu(self.bn1(self.conv1(low_level_feat)))
        x = F.interpolate(x, size=low_level_feat.size()[2:], mode="bilinear", align_corners=True)
        return self.last_conv(torch.cat((x, low_level_feat), dim=1))


class RefDeepLab(nn.Module):
    def __init__(self, num_classes=6, layers=(3, 4, 23, 3)):
        super().__init__()
        self.backbone = RefResNet(layers)
        self.aspp = RefASPP()
        self.decoder = RefDecoder(num_classes)

    def forward(self, input):
        x, low = self.backbone(input)
        x = self.decoder(self.aspp(x), low)
        x = F.interpolate(x, size=input.size()[2:], mode="bilinear", align_corners=True)
        return x, x


def _randomised(layers=(3, 4, 23, 3), seed=0) -> RefDeepLab:
    """Random weights and BatchNorm statistics taken from a batch, so eval activations stay O(1)."""
    torch.manual_seed(seed)
    net = RefDeepLab(6, layers)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one batch sets the running stats
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    net.train()
    with torch.no_grad():
        net(torch.rand(2, 3, 65, 97))
    return net.eval()


def test_authors_resnet101_state_dict_gives_their_logits(tmp_path):
    ref = _randomised()
    path = tmp_path / "ddd17_event_ckpt.pth"
    torch.save(ref.state_dict(), path)  # as their training script saves it

    x = torch.rand(1, 3, 65, 97)
    with torch.no_grad():
        want = ref(x)[0]
        want_high, want_low = ref.backbone(x)
        want_aspp = ref.aspp(want_high)
    assert want.std() > 1e-3  # a meaningful comparison, not zeros against zeros

    model, meta = load_checkpoint(path)
    assert not model.training
    assert meta["backbone"] == "resnet101" and meta["in_channels"] == 3 and meta["num_classes"] == 6
    assert meta["input_size"] == {"height": 256, "width": 512}
    assert meta["representation"]["name"] == "evdistill_2ch" and meta["preprocessing"]["channels"] == "pad"
    with torch.no_grad():
        got = model(x)
        feats = model(x, return_features=True)
    tol = 1e-5 * max(1.0, float(want.abs().max()))
    torch.testing.assert_close(got, want, atol=tol, rtol=1e-5)
    torch.testing.assert_close(feats["logits"], want, atol=tol, rtol=1e-5)
    torch.testing.assert_close(feats["high_level"], want_high, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(feats["low_level"], want_low, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats["aspp"], want_aspp, atol=1e-5, rtol=1e-5)


def test_aspp_rates_match_theirs_on_a_large_feature_map():
    """At 65x97 the stride-16 map is 5x7 and every dilation >= 7 sees only its centre tap; check the
    ASPP (rates 6/12/18, image pool) alone on a map large enough for all taps to matter."""
    torch.manual_seed(2)
    ref = RefASPP(inplanes=64)
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.running_mean, -0.1, 0.1)
            nn.init.uniform_(m.running_var, 0.5, 2.0)
    ref.eval()
    mine = ASPP(64, output_stride=16)
    mine.load_state_dict(ref.state_dict())
    mine.eval()
    x = torch.randn(1, 64, 41, 45)
    with torch.no_grad():
        torch.testing.assert_close(mine(x), ref(x), atol=1e-5, rtol=1e-5)


def test_authors_layout_other_depth_and_key_mismatch(tmp_path):
    """ResNet-50 depth is read off the keys; a checkpoint with a foreign tensor shape is refused by name."""
    ref = _randomised(layers=(3, 4, 6, 3), seed=1)
    state = ref.state_dict()
    path = tmp_path / "r50.pth"
    torch.save({"module." + k: v for k, v in state.items()}, path)  # saved from nn.DataParallel
    model, meta = load_checkpoint(path)
    assert meta["backbone"] == "resnet50"
    x = torch.rand(1, 3, 33, 47)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x)[0], atol=1e-5, rtol=1e-5)
        # multi-grid layer4 (dilations 2, 4, 8) on a map where every tap lands inside
        feat = torch.randn(1, 1024, 19, 23)
        torch.testing.assert_close(model.backbone.layer4(feat), ref.backbone.layer4(feat), atol=1e-4, rtol=1e-5)

    state["aspp.conv1.weight"] = torch.zeros(256, 1024, 1, 1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    try:
        load_checkpoint(bad)
    except ValueError as exc:
        msg = str(exc)
        assert "aspp.conv1.weight" in msg and "(256, 1024, 1, 1)" in msg and "(256, 1280, 1, 1)" in msg
    else:
        raise AssertionError("a mismatched shape must be refused")
