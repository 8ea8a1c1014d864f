"""Distillation loss terms against plain numpy references; zero where they must be; gradients flow."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from evdistill_ros.distill import losses
from evdistill_ros.distill.optim import lr_factor


def _np_softmax(z, axis):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def test_cross_entropy_matches_numpy_and_ignores():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 5, 7, generator=g)
    labels = torch.randint(0, 6, (2, 5, 7), generator=g)
    labels[0, :2] = 255
    p = _np_softmax(logits.numpy(), 1)
    lab = labels.numpy()
    vals = [-np.log(p[n, lab[n, i, j], i, j]) for n in range(2) for i in range(5) for j in range(7) if lab[n, i, j] != 255]
    assert losses.cross_entropy(logits, labels).item() == pytest.approx(np.mean(vals), rel=1e-5)
    none = torch.full_like(labels, 255)
    z = losses.cross_entropy(logits.requires_grad_(), none)
    assert z.item() == 0.0 and z.requires_grad


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fraction", [1.0, 0.3, 1e-9])
def test_weighted_and_bootstrapped_cross_entropy_match_numpy(weighted, fraction):
    """Plain python: per-pixel weighted CE, the hardest round(f * n) (at least 1), weighted mean."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, 5, generator=g)
    labels = torch.randint(0, 4, (2, 6, 5), generator=g)
    labels[1, :3] = 255
    weight = torch.tensor([0.5, 1.0, 2.0, 4.0]) if weighted else None
    p, lab = _np_softmax(logits.numpy(), 1), labels.numpy()
    pix = [(-np.log(p[n, lab[n, i, j], i, j]), 1.0 if weight is None else float(weight[lab[n, i, j]]))
           for n in range(2) for i in range(6) for j in range(5) if lab[n, i, j] != 255]
    k = max(1, int(round(fraction * len(pix))))
    hard = sorted(pix, key=lambda lw: lw[0] * lw[1], reverse=True)[:k]
    want = sum(l * w for l, w in hard) / sum(w for _, w in hard)
    got = losses.CrossEntropy(weight, fraction)(logits, labels)  # 1e-9: still the hardest pixel
    assert got.item() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="top_fraction"):
        losses.cross_entropy(logits, labels, top_fraction=0.0)


def test_median_frequency_weights():
    w = losses.median_frequency_weights([600, 300, 100, 0, 1])
    f = np.array([600, 300, 100, 1]) / 1001
    want = np.median(f) / f
    np.testing.assert_allclose(w.numpy()[[0, 1, 2]], want[:3], rtol=1e-6)
    assert w[3] == 1.0 and w[4] == 10.0  # absent: 1; rare: clipped at max_weight
    assert torch.equal(losses.median_frequency_weights([0, 0]), torch.ones(2))
    root = losses.median_frequency_weights([600, 300, 100, 0, 1], power=0.5)
    np.testing.assert_allclose(root.numpy()[[0, 1, 2, 4]], np.minimum(np.sqrt(want), 10.0), rtol=1e-6)
    assert root[3] == 1.0


def test_cross_entropy_upsamples_and_rejects_bad_shapes():
    logits = torch.randn(1, 6, 4, 4, requires_grad=True)
    labels = torch.randint(0, 6, (1, 8, 8))
    losses.cross_entropy(logits, labels).backward()
    assert logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="cross_entropy"):
        losses.cross_entropy(logits, labels[0])


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_pixel_kd_matches_numpy_kl(T):
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 6, 3, 4, generator=g), torch.randn(2, 6, 3, 4, generator=g)
    ps, pt = _np_softmax(s.numpy() / T, 1), _np_softmax(t.numpy() / T, 1)
    ref = (pt * (np.log(pt) - np.log(ps))).sum(1).mean() * T * T
    assert losses.pixel_kd(s, t, T).item() == pytest.approx(ref, rel=1e-5)
    mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    mask[1, 2] = True
    ref_m = (pt * (np.log(pt) - np.log(ps))).sum(1)[1, 2].mean() * T * T
    assert losses.pixel_kd(s, t, T, mask=mask).item() == pytest.approx(ref_m, rel=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_class_weighted_pixel_kd_matches_plain_python(masked):
    """Each pixel's KL weighted by the class of the teacher's argmax there, the weighted mean;
    weights of ones are the plain KD."""
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 4, 3, 5, generator=g), torch.randn(2, 4, 3, 5, generator=g)
    weight = torch.tensor([0.25, 1.0, 3.0, 8.0])
    mask = torch.rand(2, 3, 5, generator=g) > 0.4 if masked else None
    ps, pt = _np_softmax(s.numpy().astype(np.float64), 1), _np_softmax(t.numpy().astype(np.float64), 1)
    num = den = 0.0
    for n in range(2):
        for i in range(3):
            for j in range(5):
                if mask is not None and not mask[n, i, j]:
                    continue
                kl = sum(pt[n, c, i, j] * np.log(pt[n, c, i, j] / ps[n, c, i, j]) for c in range(4))
                w = float(weight[int(np.argmax(pt[n, :, i, j]))])
                num, den = num + w * kl, den + w
    got = losses.pixel_kd(s, t, 1.0, mask=mask, class_weight=weight)
    assert got.item() == pytest.approx(num / den, rel=1e-5)
    assert losses.pixel_kd(s, t, mask=mask, class_weight=torch.ones(4)).item() == pytest.approx(
        losses.pixel_kd(s, t, mask=mask).item(), rel=1e-6)
    with pytest.raises(ValueError, match="class_weight has 3 entries for 4 classes"):
        losses.pixel_kd(s, t, class_weight=torch.ones(3))


def test_pixel_kd_zero_when_equal_and_grad_only_to_student():
    s = torch.randn(2, 6, 8, 8, requires_grad=True)
    t = s.detach().clone().requires_grad_()
    assert losses.pixel_kd(s, t).item() == pytest.approx(0.0, abs=1e-6)
    loss = losses.pixel_kd(s, t + torch.randn_like(t))
    loss.backward()
    assert loss.item() > 0 and s.grad.abs().sum() > 0 and t.grad is None
    with pytest.raises(ValueError, match="temperature"):
        losses.pixel_kd(s, t, temperature=0)


def test_affinity_matrix_matches_numpy():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(2, 5, 4, 6, generator=g)
    a = losses.affinity_matrix(f, nodes=16).numpy()
    v = f.numpy().reshape(2, 5, -1)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    ref = np.einsum("ncp,ncq->npq", v, v)
    np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-6)
    # pooling: 8x8 to 4x4 nodes is 2x2 block means
    f8 = torch.randn(1, 3, 8, 8, generator=g)
    pooled = f8.numpy().reshape(1, 3, 4, 2, 4, 2).mean((3, 5)).reshape(1, 3, 16)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(losses.affinity_matrix(f8, nodes=4).numpy(),
                               np.einsum("ncp,ncq->npq", pooled, pooled), rtol=1e-5, atol=1e-6)


def test_affinity_kd_zero_for_scaled_features_and_differs_otherwise():
    f = torch.randn(2, 16, 8, 8)
    s = (3.0 * f).requires_grad_()
    assert losses.affinity_kd(s, f).item() == pytest.approx(0.0, abs=1e-6)
    # different channel counts are fine: graphs are positions x positions
    s2 = torch.randn(2, 7, 8, 8, requires_grad=True)
    loss = losses.affinity_kd(s2, f, nodes=4)
    loss.backward()
    assert loss.item() > 0 and s2.grad.abs().sum() > 0


def test_reconstruction_loss_l1():
    pred = torch.rand(2, 1, 4, 4, requires_grad=True)
    target = torch.rand(2, 1, 8, 8)
    up = torch.nn.functional.interpolate(pred.detach(), size=(8, 8), mode="bilinear", align_corners=False)
    assert losses.reconstruction_loss(pred, target).item() == pytest.approx((up - target).abs().mean().item(), rel=1e-6)
    assert losses.reconstruction_loss(target, target).item() == 0.0
    losses.reconstruction_loss(pred, target).backward()
    assert pred.grad.abs().sum() > 0


def test_lr_schedule_warmup_then_poly():
    assert lr_factor(0, 5000, 1000) == pytest.approx(0.1)
    assert lr_factor(500, 5000, 1000) == pytest.approx(0.55)
    assert lr_factor(1000, 5000, 1000) == pytest.approx(1.0)
    assert lr_factor(3000, 5000, 1000) == pytest.approx(0.5 ** 0.9)
    assert lr_factor(5000, 5000, 1000) == 0.0
    # short runs: warmup capped at a fifth
    assert lr_factor(20, 100, 1000) == pytest.approx(1.0)
