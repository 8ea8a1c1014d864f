"""Simulator kernels against plain Python / numpy references: ESIM events, rasteriser, APS, noise."""
from __future__ import annotations

import numpy as np
import pytest

from evdistill_ros.sim import render as rd
from evdistill_ros.sim.aps import ApsSensor
from evdistill_ros.sim.esim import EventSimulator, hot_pixels, noise_events
from evdistill_ros.sim.scene import SKY


def esim_reference(images, times, eps, cp, cn, refractory):
    """Per-pixel pure-Python ESIM: linear log intensity between renders, threshold crossings."""
    H, W = images[0].shape
    L = np.log(images[0].astype(np.float64) + eps)
    ref = L.copy()
    last = np.full((H, W), -(10 ** 18), np.int64)
    out = []
    for img, t0, t1 in zip(images[1:], times[:-1], times[1:]):
        L1 = np.log(img.astype(np.float64) + eps)
        for r in range(H):
            for c in range(W):
                l0, l1, rf = L[r, c], L1[r, c], ref[r, c]
                if l1 - rf >= cp[r, c]:
                    step, pol, m = cp[r, c], 1, int((l1 - rf) / cp[r, c])
                elif rf - l1 >= cn[r, c]:
                    step, pol, m = -cn[r, c], 0, int((rf - l1) / cn[r, c])
                else:
                    continue
                for _ in range(m):
                    rf += step
                    frac = min(max((rf - l0) / (l1 - l0) if l1 != l0 else 1.0, 0.0), 1.0)
                    te = max(t0 + int(frac * (t1 - t0)), t0 + 1)
                    if te - last[r, c] >= refractory:
                        out.append((te, r, c, pol))
                        last[r, c] = te
                ref[r, c] = rf
        L = L1
    return sorted(out)


@pytest.mark.parametrize("refractory", [0, 3_000_000])
def test_esim_matches_reference(refractory):
    rng = np.random.default_rng(7)
    H, W = 9, 11
    base = rng.uniform(0.05, 1.0, (H, W))
    # smooth brightness changes plus a few abrupt ones, including the darkest pixels
    images = [(base * np.exp(0.9 * np.sin(k / 3.0 + base * 6))).astype(np.float32) for k in range(12)]
    images[5][2:4, 3:6] = 0.0
    images[8][:, 0] = 5.0
    times = np.cumsum(rng.integers(500_000, 5_000_000, len(images))).astype(np.int64)
    sim = EventSimulator(H, W, np.random.default_rng(1), 0.2, 0.3, 0.04, refractory_ns=refractory, eps=1e-3)
    sim.reset(images[0])
    got = []
    for img, t0, t1 in zip(images[1:], times[:-1], times[1:]):
        ev = sim.step(img, int(t0), int(t1))
        assert np.all((ev.t > t0) & (ev.t <= t1))
        got += list(zip(ev.t.tolist(), ev.y.tolist(), ev.x.tolist(), ev.p.tolist()))
    want = esim_reference(images, times, 1e-3, sim.cp, sim.cn, refractory)
    assert len(want) > 50
    assert sorted(got) == want


def test_esim_edge_cases():
    sim = EventSimulator(4, 5, np.random.default_rng(0))
    img = np.full((4, 5), 0.3, np.float32)
    sim.reset(img)
    assert len(sim.step(img, 0, 1000)) == 0  # no change, no event
    ev = sim.step(img * 10, 1000, 1_000_001_000)  # log(10) = 2.3: about 9 ON events per pixel
    assert np.all(ev.p == 1) and 20 * 7 <= len(ev) <= 20 * 12
    # a fast step: the 100 us refractory period leaves one event per pixel
    ev = sim.step(img, 1_000_001_000, 1_000_002_000)
    assert np.all(ev.p == 0) and len(ev) == 20
    with pytest.raises(ValueError, match="time must increase"):
        sim.step(img, 2000, 2000)
    with pytest.raises(ValueError, match="shape"):
        sim.step(np.zeros((3, 3), np.float32), 2000, 3000)
    with pytest.raises(ValueError, match="contrast"):
        EventSimulator(4, 5, np.random.default_rng(0), contrast_pos=0.0)


def test_noise_rate_and_hot_pixels():
    rng = np.random.default_rng(3)
    H, W, rate = 40, 50, 4.0
    ev = noise_events(rng, 0, 2_000_000_000, H, W, rate, None)
    expected = rate * H * W * 2.0
    assert abs(len(ev) - expected) < 5 * np.sqrt(expected)
    assert ev.x.max() < W and ev.y.max() < H and abs(ev.positive.mean() - 0.5) < 0.05
    hot = hot_pixels(rng, H, W, 0.001, (100.0, 100.0))
    assert len(hot) == 2
    ev = noise_events(rng, 0, 1_000_000_000, H, W, 0.0, hot)
    assert set(zip(ev.x.tolist(), ev.y.tolist())) <= {(int(x), int(y)) for x, y, _ in hot}
    assert abs(len(ev) - 200) < 5 * np.sqrt(200)


def _point_in_convex(px, py, poly):
    """Pure-Python inside test for a convex polygon (any orientation)."""
    sign = 0
    for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]):
        cross = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
        if cross != 0:
            s = 1 if cross > 0 else -1
            if sign and s != sign:
                return False
            sign = s
    return True


@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (0.2, -0.05)])
def test_rasteriser_matches_projection(yaw, pitch):
    cam = rd.Camera.davis(64, 48)
    rnd = rd.Renderer(cam)
    R = rd.rotation(yaw, pitch)
    c = np.array([0.3, 1.4, -2.0])
    prim = np.zeros((1, rd.NCOLS))
    # a tilted quad in front of the camera
    a = np.array([0.9, 0.0, 0.3]); a /= np.linalg.norm(a)
    b = np.array([0.0, 0.95, -0.2]); b /= np.linalg.norm(b)
    b -= a * (a @ b); b /= np.linalg.norm(b)
    prim[0, rd.O:rd.O + 3] = (-1.0, 0.5, 6.0)
    prim[0, rd.A:rd.A + 3], prim[0, rd.B:rd.B + 3] = a, b
    prim[0, [rd.U0, rd.U1, rd.V0, rd.V1]] = 0.0, 2.5, 0.0, 1.5
    prim[0, rd.MAT], prim[0, rd.CLS], prim[0, rd.ALB] = rd.SKIN, 4, 0.5
    env = np.zeros(rd.ENV_LEN); env[rd.E_AMBIENT] = 1.0; env[rd.E_SKY] = 1.0; env[rd.E_GAIN] = 1.0
    _, labels, _ = rnd.render(prim, np.zeros((0, 4)), env, R, c, np.zeros(3), np.zeros(3))
    corners = [prim[0, :3] + u * a + v * b for u, v in ((0, 0), (2.5, 0), (2.5, 1.5), (0, 1.5))]
    poly = []
    for p in corners:
        q = R @ (p - c)
        poly.append((cam.f * q[0] / q[2] + cam.cx, cam.f * q[1] / q[2] + cam.cy))
    want = np.array([[_point_in_convex(x, y, poly) for x in range(cam.width)] for y in range(cam.height)])
    got = labels == 4
    assert want.sum() > 100
    # identical except possibly pixels whose centre lies on the outline
    assert (got != want).sum() <= 0.02 * want.sum()
    assert np.all(labels[~want & ~got] == SKY)  # the rest is sky (the renderer labels in the "sim" set)


def test_aps_exposure_clipping_and_gamma():
    rng = np.random.default_rng(0)
    aps = ApsSensor(30, 40, rng, fps=20, read_noise=0.0, column_fpn=0.0)
    rad = np.full((30, 40), 0.5)
    img = aps.expose(rad, 0.004)  # 0.5 * 4 ms / 10 ms = 0.2 of full well
    expect = 255 * 0.2 ** (1 / 2.2)
    assert abs(img.mean() - expect) < 2.0 and img.std() < 4.0
    assert np.all(aps.expose(np.full((30, 40), 100.0), 0.01) == 255)  # clipped
    dark = aps.expose(np.zeros((30, 40)), 0.04)
    assert dark.max() == 0
    # auto exposure raises a dark scene's exposure up to the limit
    aps.expose(np.full((30, 40), 1e-4), 0.02)
    assert aps.next_exposure() == pytest.approx(0.8 / 20)
    with pytest.raises(ValueError, match="shape"):
        aps.expose(np.zeros((3, 3)), 0.01)
