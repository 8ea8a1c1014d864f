"""Ray-exact rasteriser and shader for the synthetic street (numba, no per-pixel Python).

The scene is a table of planar primitives (float64 array, one row each, columns below):
each is a rectangle or an ellipse in a plane spanned by two orthonormal world axes
``a`` (u) and ``b`` (v) through an origin ``o``. For every pixel inside a primitive's
projected bounding box the kernel intersects the pixel ray with the plane, keeps the
nearest hit (z-buffer) and stores the hit's plane coordinates (u, v). Shading then maps
procedural textures in those *world* coordinates, so texture moves with the surface
under perspective, band-limited by the pixel footprint (no shimmering at distance).

World frame: X right, Y up, Z forward (road direction), metres. Camera frame: x right,
y down, z forward (optical axis). Pixel (col, row) looks along ((col-cx)/fx, (row-cy)/fy, 1).

Public:
    render(prims, lights, env, cam, pose) -> (radiance float32 (H,W), labels uint8 (H,W), max_flow px/s)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

# --- primitive table columns -------------------------------------------------------------
O, A, B = 0, 3, 6  # origin, u axis, v axis (3 each, world)
U0, U1, V0, V1 = 9, 10, 11, 12  # extent in plane coordinates
SHAPE = 13  # 0 rectangle, 1 ellipse inscribed in the extent
MAT = 14  # material id (below)
CLS = 15  # class id (ground decides per pixel)
ALB = 16  # base albedo
VAR = 17  # per-object variant / texture seed
EMIT = 18  # emitted radiance (lamps), added after lighting
VEL = 19  # world velocity (3), for the optic-flow bound
NCOLS = 22

RECT, ELLIPSE = 0, 1

# --- materials ----------------------------------------------------------------------------
GROUND, FACADE, WALL, FOLIAGE, BARK, METAL, SIGN, CAR, GLASS, TIRE, CLOTH, SKIN, LAMP, HEDGE = range(14)

# --- env vector (lighting) ----------------------------------------------------------------
E_AMBIENT, E_SUN, E_SUNX, E_SUNY, E_SUNZ, E_SKY, E_HEADLIGHT, E_NIGHT, E_SEED, E_GAIN = range(10)
ENV_LEN = 10

# Ground layout (|X| in metres): road, curb, sidewalk, then grass verge.
ROAD_HALF = 5.25
CURB_OUT = 5.45
SIDEWALK_OUT = 8.5


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics; ``fx = fy``; principal point at the image centre."""

    width: int
    height: int
    f: float
    cx: float
    cy: float

    @classmethod
    def davis(cls, width: int, height: int, hfov_deg: float = 70.0, horizon_frac: float = 0.47) -> "Camera":
        """A DAVIS346-like lens; the principal row sits at ``horizon_frac`` of the height."""
        f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
        return cls(width, height, float(f), (width - 1) / 2.0, horizon_frac * (height - 1))

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.f, 0, self.cx], [0, self.f, self.cy], [0, 0, 1.0]])


def rotation(yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """World-to-camera rotation (rows: camera x, y, z axes in world) for heading ``yaw``
    (about world Y; yaw > 0 turns towards +X) and ``pitch`` (> 0 looks up)."""
    cp, sp, cyw, syw = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    z = np.array([syw * cp, sp, cyw * cp])
    x = np.array([cyw, 0.0, -syw])
    y = np.cross(x, z)  # points down
    if roll:
        cr, sr = np.cos(roll), np.sin(roll)
        x, y = cr * x + sr * y, -sr * x + cr * y
    return np.stack([x, y, z])


# --- rasteriser ---------------------------------------------------------------------------
@njit(cache=True, fastmath=True)
def _rasterize(prims, R, c, f, cx, cy, near, far, zbuf, pid, ubuf, vbuf):
    H, W = zbuf.shape
    zbuf[:, :] = far
    pid[:, :] = -1
    poly = np.empty((10, 3))
    tmp = np.empty((10, 3))
    for k in range(prims.shape[0]):
        oc = np.empty(3)
        ac = np.empty(3)
        bc = np.empty(3)
        for i in range(3):
            oc[i] = (R[i, 0] * (prims[k, O] - c[0]) + R[i, 1] * (prims[k, O + 1] - c[1])
                     + R[i, 2] * (prims[k, O + 2] - c[2]))
            ac[i] = R[i, 0] * prims[k, A] + R[i, 1] * prims[k, A + 1] + R[i, 2] * prims[k, A + 2]
            bc[i] = R[i, 0] * prims[k, B] + R[i, 1] * prims[k, B + 1] + R[i, 2] * prims[k, B + 2]
        u0, u1, v0, v1 = prims[k, U0], prims[k, U1], prims[k, V0], prims[k, V1]
        # corners of the extent, clipped to z > near (Sutherland-Hodgman on one plane)
        for j in range(4):
            uu = u0 if (j == 0 or j == 3) else u1
            vv = v0 if j < 2 else v1
            for i in range(3):
                poly[j, i] = oc[i] + uu * ac[i] + vv * bc[i]
        n_in = 4
        n_out = 0
        for j in range(n_in):
            p_z = poly[j, 2]
            q = (j + 1) % n_in
            q_z = poly[q, 2]
            if p_z > near:
                for i in range(3):
                    tmp[n_out, i] = poly[j, i]
                n_out += 1
            if (p_z > near) != (q_z > near):
                s = (near - p_z) / (q_z - p_z)
                for i in range(3):
                    tmp[n_out, i] = poly[j, i] + s * (poly[q, i] - poly[j, i])
                n_out += 1
        if n_out < 3:
            continue
        xmin, xmax, ymin, ymax = 1e18, -1e18, 1e18, -1e18
        for j in range(n_out):
            px = f * tmp[j, 0] / tmp[j, 2] + cx
            py = f * tmp[j, 1] / tmp[j, 2] + cy
            xmin = min(xmin, px)
            xmax = max(xmax, px)
            ymin = min(ymin, py)
            ymax = max(ymax, py)
        c0 = max(0, int(np.floor(xmin)))
        c1 = min(W - 1, int(np.ceil(xmax)))
        r0 = max(0, int(np.floor(ymin)))
        r1 = min(H - 1, int(np.ceil(ymax)))
        if c0 > c1 or r0 > r1:
            continue
        n0 = ac[1] * bc[2] - ac[2] * bc[1]
        n1 = ac[2] * bc[0] - ac[0] * bc[2]
        n2 = ac[0] * bc[1] - ac[1] * bc[0]
        nd = n0 * oc[0] + n1 * oc[1] + n2 * oc[2]
        if abs(nd) < 1e-9:
            continue  # plane through the optical centre: seen edge-on
        ellipse = prims[k, SHAPE] == ELLIPSE
        uc, vc = 0.5 * (u0 + u1), 0.5 * (v0 + v1)
        ru, rv = 0.5 * (u1 - u0), 0.5 * (v1 - v0)
        for r in range(r0, r1 + 1):
            dy = (r - cy) / f
            for col in range(c0, c1 + 1):
                dx = (col - cx) / f
                den = n0 * dx + n1 * dy + n2
                if abs(den) < 1e-12:
                    continue
                z = nd / den
                if z <= near or z >= zbuf[r, col]:
                    continue
                qx = z * dx - oc[0]
                qy = z * dy - oc[1]
                qz = z - oc[2]
                u = qx * ac[0] + qy * ac[1] + qz * ac[2]
                v = qx * bc[0] + qy * bc[1] + qz * bc[2]
                if ellipse:
                    eu = (u - uc) / ru
                    ev = (v - vc) / rv
                    if eu * eu + ev * ev > 1.0:
                        continue
                elif u < u0 or u >= u1 or v < v0 or v >= v1:
                    continue
                zbuf[r, col] = z
                pid[r, col] = k
                ubuf[r, col] = u
                vbuf[r, col] = v


# --- procedural textures ------------------------------------------------------------------
@njit(cache=True, inline="always")
def _hash(ix, iy, s):
    h = (ix * 374761393 + iy * 668265263 + s * 1274126177) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1103515245) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return h * (1.0 / 4294967296.0)


TEX_SIZE = 512  # texels per side of the tileable noise texture (power of two)
TEX_UNIT = 64.0  # texels per noise unit (the coarsest octave's wavelength)


def noise_texture(size: int = TEX_SIZE, seed: int = 12345) -> np.ndarray:
    """Tileable fractal value noise with its mip pyramid: float32 (levels, size, size), zero mean.

    Level ``l`` holds the 2**l box-filtered texture in its top-left (size >> l) square, so
    a lookup with a footprint of f texels reads level log2(f): trilinear mip-mapping.
    """
    rng = np.random.default_rng(seed)
    x = np.arange(size, dtype=np.float64)
    tex = np.zeros((size, size))
    wavelength, amp = TEX_UNIT, 0.5
    while wavelength >= 2:
        n = int(size / wavelength)
        lattice = rng.random((n, n)) - 0.5
        g = x / wavelength
        i0 = np.floor(g).astype(np.int64) % n
        i1 = (i0 + 1) % n
        t = g - np.floor(g)
        t = t * t * (3 - 2 * t)
        rows0 = lattice[i0][:, i0] * (1 - t)[None, :] + lattice[i0][:, i1] * t[None, :]
        rows1 = lattice[i1][:, i0] * (1 - t)[None, :] + lattice[i1][:, i1] * t[None, :]
        tex += amp * (rows0 * (1 - t)[:, None] + rows1 * t[:, None])
        wavelength /= 2
        amp *= 0.55
    tex -= tex.mean()
    levels = int(np.log2(size)) + 1
    pyr = np.zeros((levels, size, size), np.float32)
    cur = tex
    for lev in range(levels):
        m = cur.shape[0]
        pyr[lev, :m, :m] = cur
        if m > 1:
            cur = 0.25 * (cur[0::2, 0::2] + cur[1::2, 0::2] + cur[0::2, 1::2] + cur[1::2, 1::2])
    return pyr


@njit(cache=True, inline="always")
def _bilerp(tex, lev, x, y):
    n = tex.shape[1] >> lev
    fx = np.floor(x)
    fy = np.floor(y)
    tx = x - fx
    ty = y - fy
    ix = np.int64(fx) & (n - 1)
    iy = np.int64(fy) & (n - 1)
    jx = (ix + 1) & (n - 1)
    jy = (iy + 1) & (n - 1)
    a = tex[lev, iy, ix]
    b = tex[lev, iy, jx]
    c = tex[lev, jy, ix]
    d = tex[lev, jy, jx]
    return a + (b - a) * tx + (c - a) * ty + (a - b - c + d) * tx * ty


@njit(cache=True, inline="always")
def _fbm(tex, x, y, s, freq, fp):
    """Zero-mean fractal noise (about -0.5..0.5) at (x, y) metres with base frequency ``freq``
    (1/m), trilinearly mip-mapped so detail finer than ~2 pixel footprints ``fp`` is filtered."""
    k = freq * TEX_UNIT
    ox = ((s * 2654435761) & 0xFFFF) * 0.0078125
    oy = ((s * 2246822519) & 0xFFFF) * 0.0078125
    x = x * k + ox
    y = y * k + oy
    f = 2.0 * fp * k
    levels = tex.shape[0]
    lev = np.log2(f) if f > 1.0 else 0.0
    l0 = int(lev)
    if l0 >= levels - 1:
        return 0.0
    w = lev - l0
    scale = 1.0 / (1 << l0)
    a = _bilerp(tex, l0, x * scale, y * scale)
    if w > 0.0:
        b = _bilerp(tex, l0 + 1, x * scale * 0.5, y * scale * 0.5)
        a += w * (b - a)
    return a


@njit(cache=True, inline="always")
def _band(fp, period):
    """Weight 1 for patterns of ``period`` metres well resolved, fading to 0 below ~3 pixels."""
    w = (period / fp - 3.0) / 3.0
    return 0.0 if w < 0.0 else (1.0 if w > 1.0 else w)


@njit(cache=True, inline="always")
def _box(u, v, u0, u1, v0, v1):
    return 1.0 if (u >= u0 and u < u1 and v >= v0 and v < v1) else 0.0


@njit(cache=True, fastmath=True, inline="always")
def _texture(tex, mat, u, v, var, alb, fp, seed, night):
    """(albedo, emitted radiance, ground class override or -1) at plane coords (u, v); class ids
    are the "sim" set's (scene.ROAD ...)."""
    s = seed + int(var * 9973.0)
    emit = 0.0
    cls = -1
    if mat == GROUND:
        ax = abs(u)
        if ax < ROAD_HALF:
            cls = 0  # road
            a = 0.17 * (1.0 + 1.8 * _fbm(tex, u, v, seed + 1, 0.5, fp))
            if _fbm(tex, u, v, seed + 2, 0.08, fp) > 0.1:
                a *= 0.65  # patched asphalt
            # dashed centre line, solid edge lines, zebra crossings every 160 m
            dash = 1.0 if (v % 9.0) < 3.0 else 0.0
            line = _box(ax, 0.0, 0.0, 0.08, -1.0, 1.0) * dash + _box(ax, 0.0, ROAD_HALF - 0.35, ROAD_HALF - 0.2, -1.0, 1.0)
            zebra = 0.0
            if (v % 160.0) < 4.0 and ax < ROAD_HALF - 0.5:
                zebra = 1.0 if (u + 10.0) % 1.0 < 0.5 else 0.0
            m = max(line * _band(fp, 0.15), zebra * _band(fp, 0.5))
            a = a * (1.0 - m) + 0.62 * m
        elif ax < CURB_OUT:
            cls = 1  # the curb belongs to the sidewalk (Cityscapes)
            a = 0.42 * (1.0 + 0.8 * _fbm(tex, u, v, seed + 3, 2.0, fp))
        elif ax < SIDEWALK_OUT:
            cls = 1  # sidewalk
            tu = (u % 0.6) < 0.04
            tv = (v % 0.6) < 0.04
            joint = (1.0 if (tu or tv) else 0.0) * _band(fp, 0.6)
            a = 0.33 * (1.0 + 1.4 * _fbm(tex, u, v, seed + 4, 1.0, fp)) - 0.12 * joint
        else:
            cls = 5  # grass verge: terrain (vegetation in DDD17)
            a = 0.14 * (1.0 + 2.4 * _fbm(tex, u, v, seed + 5, 0.7, fp))
        return a, emit, cls
    if mat == FACADE:
        a = alb * (0.9 + 1.0 * _fbm(tex, u, v, s, 0.5, fp))
        cu = u % 2.8
        cv = v % 3.3
        win = _box(cu, cv, 0.6, 2.2, 0.9, 2.6)
        if v < 3.3:
            win = _box(cu, cv, 0.2, 2.6, 0.3, 2.9)  # shop fronts
        wb = _band(fp, 1.6)
        cell = _hash(np.int64(np.floor(u / 2.8)), np.int64(np.floor(v / 3.3)), s)
        glass = 0.05 + 0.25 * cell  # windows reflect the sky differently
        mean_cover = 0.45
        a = a * (1.0 - win * wb - mean_cover * (1.0 - wb)) + (glass * win * wb + 0.15 * mean_cover * (1.0 - wb))
        if night and win > 0.0 and cell > 0.72:
            emit = 0.03 + 0.08 * (cell - 0.72) * wb
        return a, emit, cls
    if mat == WALL:
        return alb * (0.85 + 1.0 * _fbm(tex, u, v, s, 0.3, fp)), emit, cls
    if mat == FOLIAGE:
        a = alb * (1.0 + 2.6 * _fbm(tex, u, v, s, 1.2, fp))
        return max(a, 0.01), emit, cls
    if mat == HEDGE:
        return max(alb * (1.0 + 2.4 * _fbm(tex, u, v, s, 2.0, fp)), 0.01), emit, cls
    if mat == BARK:
        return alb * (1.0 + 1.6 * _fbm(tex, u * 4.0, v * 0.5, s, 2.0, fp)), emit, cls
    if mat == METAL:
        return alb * (1.0 + 0.4 * _fbm(tex, u, v, s, 3.0, fp)), emit, cls
    if mat == SIGN:
        border = 1.0 - _box(u, v, 0.08, 0.52, 0.08, 0.52)
        pict = _box(u, v, 0.22, 0.38, 0.15, 0.45) if var > 0.5 else _box(u, v, 0.15, 0.45, 0.25, 0.35)
        m = max(border, pict) * _band(fp, 0.15)
        return alb * (1.0 - 0.8 * m), emit, cls
    if mat == CAR:
        a = alb * (1.0 + 0.6 * _fbm(tex, u, v, s, 1.5, fp))
        # door seams and a dark bumper band near the bottom
        seam = (1.0 if (u % 1.3) < 0.04 else 0.0) * _band(fp, 1.3)
        bumper = _box(0.0, v, -1.0, 1.0, 0.15, 0.35) * _band(fp, 0.2)
        return a * (1.0 - 0.6 * seam) * (1.0 - 0.7 * bumper), emit, cls
    if mat == GLASS:
        return 0.04 + 0.12 * (0.5 + _fbm(tex, u, v, s, 0.7, fp)), emit, cls
    if mat == TIRE:
        rim = _box(0.0, 0.0, -1.0, 1.0, -1.0, 1.0)
        return 0.04 + 0.1 * rim * (1.0 if (abs(u) + abs(v)) % 0.5 < 0.25 else 0.0) * _band(fp, 0.25), emit, cls
    if mat == CLOTH:
        return alb * (1.0 + 1.2 * _fbm(tex, u, v, s, 4.0, fp)), emit, cls
    if mat == SKIN:
        return alb, emit, cls
    if mat == LAMP:
        return alb, (var if night else 0.0), cls
    return alb, emit, cls


@njit(cache=True, fastmath=True)
def _shade(tex, prims, pid, zbuf, ubuf, vbuf, R, c, f, cx, cy, lights, env, vcam, wcam, out, labels, flow_step):
    """Radiance and labels per pixel; returns the largest optic flow (px/s) on a sparse grid."""
    H, W = pid.shape
    ambient = env[E_AMBIENT]
    sun = env[E_SUN]
    sx, sy, sz = env[E_SUNX], env[E_SUNY], env[E_SUNZ]
    sky = env[E_SKY]
    head = env[E_HEADLIGHT]
    night = env[E_NIGHT] > 0.5
    seed = np.int64(env[E_SEED])
    gain = env[E_GAIN]
    # camera heading (world) for the headlight cone
    hx, hy, hz = R[2, 0], R[2, 1], R[2, 2]
    vmax = 0.0
    for r in range(H):
        dy = (r - cy) / f
        for col in range(W):
            dx = (col - cx) / f
            dn = np.sqrt(dx * dx + dy * dy + 1.0)
            # ray direction in world
            wx = (R[0, 0] * dx + R[1, 0] * dy + R[2, 0]) / dn
            wy = (R[0, 1] * dx + R[1, 1] * dy + R[2, 1]) / dn
            wz = (R[0, 2] * dx + R[1, 2] * dy + R[2, 2]) / dn
            k = pid[r, col]
            if k < 0:
                # sky: brighter towards the horizon, clouds in direction coordinates
                el = max(wy, 0.0)
                az = wx / max(wz, 0.2)  # projective sky coordinates: cheaper than atan2
                cl = _fbm(tex, az * 3.0, el * 6.0, seed + 99, 1.0, 6.0 / f)
                val = sky * (0.75 + 0.45 * (1.0 - el) + 0.6 * cl)
                out[r, col] = max(val, 0.0) * gain
                labels[r, col] = 11  # sky
                if flow_step > 0 and r % flow_step == 0 and col % flow_step == 0:
                    # rotation only (points at infinity)
                    px, py, pz = dx, dy, 1.0
                    qx = -(wcam[1] * pz - wcam[2] * py)
                    qy = -(wcam[2] * px - wcam[0] * pz)
                    qz = -(wcam[0] * py - wcam[1] * px)
                    fu = f * (qx - px * qz)
                    fv = f * (qy - py * qz)
                    vmax = max(vmax, np.sqrt(fu * fu + fv * fv))
                continue
            z = zbuf[r, col]
            mat = np.int64(prims[k, MAT])
            # world-space normal, facing the camera
            ax_, ay_, az_ = prims[k, A], prims[k, A + 1], prims[k, A + 2]
            bx_, by_, bz_ = prims[k, B], prims[k, B + 1], prims[k, B + 2]
            nx = ay_ * bz_ - az_ * by_
            ny = az_ * bx_ - ax_ * bz_
            nz = ax_ * by_ - ay_ * bx_
            cosi = nx * wx + ny * wy + nz * wz
            if cosi > 0:
                nx, ny, nz, cosi = -nx, -ny, -nz, -cosi
            fp = z * dn / f / max(-cosi, 0.2)
            alb, emit, gcls = _texture(tex, mat, ubuf[r, col], vbuf[r, col], prims[k, VAR], prims[k, ALB], fp, seed, night)
            lab = np.int64(prims[k, CLS]) if gcls < 0 else gcls
            # lighting
            e = ambient * (0.75 + 0.25 * max(ny, 0.0)) + sun * max(0.0, nx * sx + ny * sy + nz * sz)
            pxw = c[0] + wx * z * dn
            pyw = c[1] + wy * z * dn
            pzw = c[2] + wz * z * dn
            for li in range(lights.shape[0]):
                lx = lights[li, 0] - pxw
                ly = lights[li, 1] - pyw
                lz = lights[li, 2] - pzw
                d2 = lx * lx + ly * ly + lz * lz + 1.0
                cl = (nx * lx + ny * ly + nz * lz) / np.sqrt(d2)
                if cl > 0:
                    e += lights[li, 3] * cl / d2
            if head > 0:
                d2 = z * z * dn * dn + 4.0
                along = wx * hx + wy * hy + wz * hz
                # low-beam cone: bright below and ahead, dim above the horizon
                cone = np.exp(-((1.0 - along) / 0.02)) * (1.0 if wy < 0.02 else 0.15)
                e += head * cone * max(-cosi, 0.0) / d2
            out[r, col] = (max(alb, 0.005) * e + emit) * gain
            labels[r, col] = lab
            if flow_step > 0 and r % flow_step == 0 and col % flow_step == 0:
                # motion field of the surface point relative to the moving camera
                px, py, pz = dx * z, dy * z, z
                rvx = vcam[0] - (R[0, 0] * prims[k, VEL] + R[0, 1] * prims[k, VEL + 1] + R[0, 2] * prims[k, VEL + 2])
                rvy = vcam[1] - (R[1, 0] * prims[k, VEL] + R[1, 1] * prims[k, VEL + 1] + R[1, 2] * prims[k, VEL + 2])
                rvz = vcam[2] - (R[2, 0] * prims[k, VEL] + R[2, 1] * prims[k, VEL + 1] + R[2, 2] * prims[k, VEL + 2])
                qx = -rvx - (wcam[1] * pz - wcam[2] * py)
                qy = -rvy - (wcam[2] * px - wcam[0] * pz)
                qz = -rvz - (wcam[0] * py - wcam[1] * px)
                fu = f * (qx * pz - px * qz) / (pz * pz)
                fv = f * (qy * pz - py * qz) / (pz * pz)
                vmax = max(vmax, np.sqrt(fu * fu + fv * fv))
    return vmax


_TEX: list[np.ndarray] = []


def _texture_cache() -> np.ndarray:
    if not _TEX:
        _TEX.append(noise_texture())
    return _TEX[0]


class Renderer:
    """Holds the per-pixel buffers for one camera; ``render`` is called once per time step."""

    def __init__(self, cam: Camera, near: float = 0.3, far: float = 1e4, flow_step: int = 4):
        self.cam = cam
        h, w = cam.height, cam.width
        self.near, self.far, self.flow_step = near, far, flow_step
        self.zbuf = np.empty((h, w))
        self.pid = np.empty((h, w), np.int64)
        self.ubuf = np.zeros((h, w))
        self.vbuf = np.zeros((h, w))
        self.tex = _texture_cache()

    def render(
        self, prims: np.ndarray, lights: np.ndarray, env: np.ndarray, R: np.ndarray, c: np.ndarray,
        vcam: np.ndarray, wcam: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Linear radiance (float32, H x W), class labels (uint8) and the max optic flow in px/s.

        ``R``: world-to-camera rotation, ``c``: camera centre (world), ``vcam`` / ``wcam``: the
        camera's linear and angular velocity expressed in the camera frame.
        """
        cam = self.cam
        if prims.ndim != 2 or prims.shape[1] != NCOLS:
            raise ValueError(f"primitive table must be (N, {NCOLS}), got {prims.shape}")
        _rasterize(prims, R, c, cam.f, cam.cx, cam.cy, self.near, self.far, self.zbuf, self.pid, self.ubuf, self.vbuf)
        out = np.empty((cam.height, cam.width), np.float32)
        labels = np.empty((cam.height, cam.width), np.uint8)
        flow = _shade(self.tex, prims, self.pid, self.zbuf, self.ubuf, self.vbuf, R, c, cam.f, cam.cx, cam.cy,
                      lights, env, vcam, wcam, out, labels, self.flow_step)
        return out, labels, float(flow)
