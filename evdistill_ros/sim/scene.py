"""Procedural street and ego motion for the synthetic DAVIS (deterministic for a seed).

A straight two-lane street along world +Z (X right, Y up, metres): road |X| < 5.25 with
lane markings and zebra crossings, curb, sidewalk to |X| = 8.5, then grass; along both sides
blocks of buildings (facades with windows), parks (trees, hedges), streetlights, signs,
traffic lights, parked cars. Traffic: a lead car in the ego lane, oncoming cars, and
pedestrians walking on the sidewalks, all moving on their own. Everything is a planar
primitive row (see `render.py`) generated once for the whole route, so the world does not
depend on how finely time is sampled.

Public:
    Trajectory.generate(seconds, rng, speed=None) -> Trajectory; .pose(t) -> Pose
    Street(rng, length_m, trajectory, night, moving_objects=True); .primitives(t) -> (prims, lights)
    CLASS frequencies follow DDD17 roughly: flat and background dominate, humans are rare.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import render as rd

LANE_X = 1.75  # ego lane centre (right-hand traffic)
CAM_HEIGHT = 1.35  # a DAVIS behind the windscreen
SEGMENT = 12.0  # metres of street generated per step
VIEW_AHEAD = 220.0
VIEW_BEHIND = 8.0

# Label ids of the "sim" class set (evdistill_ros.classes.SIM: mapped onto DDD17's six and
# DSEC's eleven); the ground's road / sidewalk (curb) / terrain and the sky are set by the renderer.
(ROAD, SIDEWALK, BUILDING, WALL, VEGETATION, TERRAIN, POLE, TRAFFIC_SIGN, TRAFFIC_LIGHT, CAR, PERSON,
 SKY) = range(12)


def _smooth_noise(rng: np.random.Generator, n: int, dt: float, tau: float) -> np.ndarray:
    """Unit-variance Ornstein-Uhlenbeck path sampled every ``dt`` (correlation time ``tau``)."""
    a = np.exp(-dt / tau)
    e = rng.standard_normal(n) * np.sqrt(1 - a * a)
    out = np.empty(n)
    x = rng.standard_normal()
    for i in range(n):  # n ~ seconds / 5 ms: cheap
        x = a * x + e[i]
        out[i] = x
    return out


@dataclass(frozen=True)
class Pose:
    c: np.ndarray  # camera centre (world)
    yaw: float
    pitch: float
    v: np.ndarray  # linear velocity (world)
    w: np.ndarray  # angular velocity (world)
    speed: float
    lead_z: float  # world Z of the lead car
    lead_v: float


@dataclass(frozen=True)
class Trajectory:
    """Ego motion sampled every ``dt`` s; poses in between are linearly interpolated."""

    dt: float
    x: np.ndarray
    z: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    speed: np.ndarray
    lead_d: np.ndarray  # distance of the lead car ahead of the camera

    @classmethod
    def generate(cls, seconds: float, rng: np.random.Generator, speed: float | None = None,
                 speed_range: tuple[float, float] = (3.0, 14.0), dt: float = 0.005) -> "Trajectory":
        n = int(np.ceil(seconds / dt)) + 2
        if speed is not None:
            v = np.full(n, float(speed))
        else:
            # piecewise targets (sometimes a stop), approached with bounded acceleration
            v = np.empty(n)
            cur = rng.uniform(*speed_range)
            target, t_next = cur, 0.0
            for i in range(n):
                t = i * dt
                if t >= t_next:
                    target = 0.0 if rng.random() < 0.12 else rng.uniform(*speed_range)
                    t_next = t + rng.uniform(3.0, 8.0)
                cur += float(np.clip(target - cur, -3.0 * dt, 2.0 * dt))
                v[i] = cur
        wiggle = 0.025 * _smooth_noise(rng, n, dt, 1.5)
        bumps = 0.0025 * _smooth_noise(rng, n, dt, 0.08)
        x = np.empty(n)
        z = np.empty(n)
        yaw = np.empty(n)
        xi, zi, yi = LANE_X, 0.0, 0.0
        for i in range(n):
            # steer back to the lane centre, plus a slow wandering heading
            target = float(np.clip(-0.06 * (xi - LANE_X), -0.08, 0.08)) + wiggle[i]
            yi += (target - yi) * min(1.0, dt / 0.6) * min(1.0, v[i] / 2.0)  # no turning on the spot
            x[i], z[i], yaw[i] = xi, zi, yi
            xi += v[i] * np.sin(yi) * dt
            zi += v[i] * np.cos(yi) * dt
        pitch = 0.01 + bumps * np.clip(v / 8.0, 0.0, 1.5)
        lead = 45.0 + 40.0 * _smooth_noise(rng, n, dt, 6.0)
        lead_d = np.clip(lead, 9.0, 160.0)
        return cls(dt, x, z, yaw, pitch, v, lead_d)

    @property
    def length_m(self) -> float:
        return float(self.z[-1])

    def pose(self, t: float) -> Pose:
        n = len(self.z)
        f = min(max(t / self.dt, 0.0), n - 1.000001)
        i = int(f)
        a = f - i

        def at(arr: np.ndarray) -> float:
            return float(arr[i] + a * (arr[i + 1] - arr[i]))

        def rate(arr: np.ndarray) -> float:
            return float((arr[i + 1] - arr[i]) / self.dt)

        yaw, pitch, sp = at(self.yaw), at(self.pitch), at(self.speed)
        c = np.array([at(self.x), CAM_HEIGHT, at(self.z)])
        v = np.array([rate(self.x), 0.0, rate(self.z)])
        w = np.array([0.0, rate(self.yaw), 0.0]) + rate(self.pitch) * np.array([-np.cos(yaw), 0.0, np.sin(yaw)])
        return Pose(c, yaw, pitch, v, w, sp, c[2] + at(self.lead_d), v[2] + rate(self.lead_d))


class _Rows:
    """Accumulates primitive rows (see render.py for the columns)."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def add(self, o, a, b, u0, u1, v0, v1, mat, cls, alb, var=0.0, emit=0.0, shape=rd.RECT, vel=(0, 0, 0)) -> None:
        r = np.zeros(rd.NCOLS)
        r[rd.O:rd.O + 3] = o
        r[rd.A:rd.A + 3] = a
        r[rd.B:rd.B + 3] = b
        r[[rd.U0, rd.U1, rd.V0, rd.V1]] = u0, u1, v0, v1
        r[rd.SHAPE], r[rd.MAT], r[rd.CLS], r[rd.ALB], r[rd.VAR] = shape, mat, cls, alb, var
        r[rd.EMIT] = emit
        r[rd.VEL:rd.VEL + 3] = vel
        self.rows.append(r)

    def array(self) -> np.ndarray:
        return np.array(self.rows).reshape(-1, rd.NCOLS)


EX, EY, EZ = np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])


def _billboard(rows: _Rows, x, y, z, w, h, mat, cls, alb, var=0.0, emit=0.0, shape=rd.RECT) -> None:
    """A camera-facing (normal along Z) rectangle or ellipse centred at x, bottom at y."""
    rows.add((x, y, z), EX, EY, -w / 2, w / 2, 0.0, h, mat, cls, alb, var, emit, shape)


def _box(rows: _Rows, x0, x1, y0, y1, z0, z1, mat, cls, alb, var=0.0, top=True) -> None:
    """Axis-aligned box as up to five faces (no bottom)."""
    rows.add((x0, y0, z0), EX, EY, 0, x1 - x0, 0, y1 - y0, mat, cls, alb, var)  # near face (z0)
    rows.add((x0, y0, z1), EX, EY, 0, x1 - x0, 0, y1 - y0, mat, cls, alb, var)
    rows.add((x0, y0, z0), EZ, EY, 0, z1 - z0, 0, y1 - y0, mat, cls, alb, var)  # x0 side
    rows.add((x1, y0, z0), EZ, EY, 0, z1 - z0, 0, y1 - y0, mat, cls, alb, var)
    if top:
        rows.add((x0, y1, z0), EX, EZ, 0, x1 - x0, 0, z1 - z0, mat, cls, alb, var)


def car_rows(rng: np.random.Generator, facing: float, night: bool) -> np.ndarray:
    """A car in its own frame (anchor on the ground at its centre, length along Z)."""
    rows = _Rows()
    L, W = rng.uniform(3.9, 4.8), rng.uniform(1.7, 1.9)
    hb, hc = rng.uniform(0.9, 1.05), rng.uniform(1.4, 1.6)
    alb = float(rng.choice([0.05, 0.08, 0.25, 0.45, 0.7, 0.8]))
    var = rng.random()
    x0, x1, z0, z1 = -W / 2, W / 2, -L / 2, L / 2
    _box(rows, x0, x1, 0.28, hb, z0, z1, rd.CAR, CAR, alb, var)
    cz0, cz1 = -0.35 * L * facing, 0.15 * L * facing
    cz0, cz1 = min(cz0, cz1), max(cz0, cz1)
    _box(rows, x0 + 0.12, x1 - 0.12, hb, hc, cz0, cz1, rd.GLASS, CAR, 0.1, var, top=False)
    rows.add((x0 + 0.12, hc, cz0), EX, EZ, 0, W - 0.24, 0, cz1 - cz0, rd.CAR, CAR, alb, var)  # roof
    for sx in (x0 - 0.01, x1 + 0.01):
        for wz in (z0 + 0.75, z1 - 0.75):
            rows.add((sx, 0.0, wz - 0.33), EZ, EY, 0, 0.66, 0, 0.66, rd.TIRE, CAR, 0.05, var, shape=rd.ELLIPSE)
    # lamps: headlights at the front (+facing end), tail lights at the back
    front, back = (z1 + 0.01, z0 - 0.01) if facing > 0 else (z0 - 0.01, z1 + 0.01)
    for lx in (x0 + 0.15, x1 - 0.45):
        rows.add((lx, 0.62, front), EX, EY, 0, 0.3, 0, 0.14, rd.LAMP, CAR, 0.7, 40.0 if night else 0.0)
        rows.add((lx, 0.72, back), EX, EY, 0, 0.3, 0, 0.12, rd.LAMP, CAR, 0.3, 1.5 if night else 0.0)
    return rows.array()


def pedestrian_rows(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Billboard pedestrian (legs, arms, torso, head); second array: animation (+1/-1 legs/arms, 0)."""
    rows = _Rows()
    anim: list[float] = []
    h = rng.uniform(1.55, 1.9)
    shirt, trousers, skin = rng.uniform(0.08, 0.8), rng.uniform(0.05, 0.45), rng.uniform(0.25, 0.6)
    var = rng.random()
    for side, (u0, u1) in ((1, (-0.16, -0.02)), (-1, (0.02, 0.16))):
        rows.add((0, 0, 0), EX, EY, u0, u1, 0.0, 0.48 * h, rd.CLOTH, PERSON, trousers, var)
        anim.append(side)
    rows.add((0, 0, 0), EX, EY, -0.21, 0.21, 0.46 * h, 0.83 * h, rd.CLOTH, PERSON, shirt, var)
    anim.append(0)
    for side, (u0, u1) in ((-1, (-0.29, -0.21)), (1, (0.21, 0.29))):
        rows.add((0, 0, -0.01), EX, EY, u0, u1, 0.52 * h, 0.81 * h, rd.CLOTH, PERSON, shirt * 0.8, var)
        anim.append(side * 0.5)
    rows.add((0, 0, 0), EX, EY, -0.1, 0.1, 0.83 * h, h, rd.SKIN, PERSON, skin, var, shape=rd.ELLIPSE)
    anim.append(0)
    return rows.array(), np.array(anim)


class Street:
    """The whole route's static primitives plus moving objects, evaluated at any time."""

    def __init__(self, rng: np.random.Generator, trajectory: Trajectory, night: bool = False,
                 moving_objects: bool = True, seconds: float | None = None):
        self.night = night
        self.traj = trajectory
        length = trajectory.length_m + VIEW_AHEAD + 60.0
        static = _Rows()
        lights: list[tuple[float, float, float, float]] = []
        # ground: one plane; the shader picks road / curb / sidewalk / grass from world X
        static.add((0, 0, 0), EX, EZ, -400.0, 400.0, -200.0, length + 400.0, rd.GROUND, ROAD, 1.0)
        n_seg = int(np.ceil((length + 40.0) / SEGMENT))
        for side in (-1.0, 1.0):
            zone = "build"
            for k in range(-3, n_seg):
                z0 = k * SEGMENT
                if k % 4 == 0:
                    zone = rng.choice(["build", "park", "open"], p=[0.6, 0.28, 0.12])
                self._segment(static, lights, rng, side, z0, zone)
            # parked cars
            for z in np.arange(-30.0, length, 6.5):
                if rng.random() < 0.18:
                    rows = car_rows(rng, 1.0, night)
                    rows[:, rd.O] += side * 4.3
                    rows[:, rd.O + 2] += z + rng.uniform(-0.5, 0.5)
                    static.rows.extend(rows)
        # traffic lights and their streetlamps at the zebra crossings (every 160 m)
        for zc in np.arange(0.0, length, 160.0):
            for side in (-1.0, 1.0):
                self._traffic_light(static, rng, side * 5.9, zc + (4.5 if side > 0 else -0.5))
        allrows = static.array()
        self.ground = allrows[:1]
        rest = allrows[1:]
        # Z extent of each primitive (corners o + u a + v b) for windowed selection
        az, bz = rest[:, rd.A + 2], rest[:, rd.B + 2]
        zmin = rest[:, rd.O + 2] + np.minimum(rest[:, rd.U0] * az, rest[:, rd.U1] * az) + \
            np.minimum(rest[:, rd.V0] * bz, rest[:, rd.V1] * bz)
        zmax = rest[:, rd.O + 2] + np.maximum(rest[:, rd.U0] * az, rest[:, rd.U1] * az) + \
            np.maximum(rest[:, rd.V0] * bz, rest[:, rd.V1] * bz)
        order = np.argsort(zmin, kind="stable")
        self.static, self.zmin, self.zmax = rest[order], zmin[order], zmax[order]
        self.max_len = float(np.max(zmax - zmin)) if len(rest) else 0.0
        self.lights = np.array(lights, dtype=np.float64).reshape(-1, 4)
        # moving objects: oncoming cars, lead car, pedestrians (all deterministic functions of t)
        dyn_rows, dyn_anim = [], []
        objs = []  # (x, z0, vz, kind, phase0, step_hz)  kind 0 linear, 1 lead car
        if moving_objects:
            dur = seconds if seconds is not None else len(trajectory.z) * trajectory.dt
            z = rng.uniform(20, 80)
            while z < length + 14.0 * dur:
                vz = -rng.uniform(7.0, 14.0)
                rows = car_rows(rng, -1.0, night)
                objs.append((-LANE_X + rng.uniform(-0.2, 0.2), z, vz, 0, 0.0, 0.0))
                dyn_rows.append(rows)
                dyn_anim.append(np.zeros(len(rows)))
                z += rng.uniform(25.0, 110.0)
            rows = car_rows(rng, 1.0, night)
            objs.append((LANE_X, 0.0, 0.0, 1, 0.0, 0.0))
            dyn_rows.append(rows)
            dyn_anim.append(np.zeros(len(rows)))
            z = rng.uniform(0, 20)
            while z < length:
                side = 1.0 if rng.random() < 0.55 else -1.0
                walking = rng.random() < 0.8
                vz = rng.choice([-1.0, 1.0]) * rng.uniform(0.9, 1.6) if walking else 0.0
                rows, anim = pedestrian_rows(rng)
                objs.append((side * rng.uniform(5.8, 7.9), z, vz, 0, rng.uniform(0, 2 * np.pi), abs(vz) * 1.2))
                dyn_rows.append(rows)
                dyn_anim.append(anim)
                z += rng.exponential(9.0)
        if dyn_rows:
            self.dyn = np.concatenate(dyn_rows)
            self.dyn_obj = np.concatenate([np.full(len(r), i) for i, r in enumerate(dyn_rows)])
            self.dyn_anim = np.concatenate(dyn_anim)
        else:
            self.dyn = np.zeros((0, rd.NCOLS))
            self.dyn_obj = np.zeros(0, np.int64)
            self.dyn_anim = np.zeros(0)
        self.objs = np.array(objs, dtype=np.float64).reshape(-1, 6)

    # --- generation helpers --------------------------------------------------------------
    def _segment(self, rows: _Rows, lights: list, rng: np.random.Generator, side: float, z0: float, zone: str) -> None:
        if zone == "build":
            gap0 = rng.uniform(0, 2.5) if rng.random() < 0.3 else 0.0
            gap1 = rng.uniform(0, 2.5) if rng.random() < 0.3 else 0.0
            xf = side * rng.uniform(9.0, 12.5)
            h = rng.uniform(7.0, 26.0)
            depth = side * rng.uniform(10.0, 18.0)
            x0, x1 = sorted((xf, xf + depth))
            za, zb = z0 + gap0, z0 + SEGMENT - gap1
            alb = rng.uniform(0.18, 0.6)
            var = rng.random()
            rows.add((xf, 0, za), EZ, EY, 0, zb - za, 0, h, rd.FACADE, BUILDING, alb, var)
            for zz in (za, zb):
                rows.add((x0, 0, zz), EX, EY, 0, x1 - x0, 0, h, rd.WALL, WALL, alb * 0.8, var)
            if rng.random() < 0.25:
                self._tree(rows, rng, side * rng.uniform(7.2, 8.0), z0 + rng.uniform(0, SEGMENT))
        elif zone == "park":
            for _ in range(rng.integers(1, 4)):
                self._tree(rows, rng, side * rng.uniform(9.0, 26.0), z0 + rng.uniform(0, SEGMENT))
            if rng.random() < 0.6:
                self._tree(rows, rng, side * rng.uniform(7.2, 8.2), z0 + rng.uniform(0, SEGMENT))
            if rng.random() < 0.4:
                xh = side * 8.7
                rows.add((xh, 0, z0), EZ, EY, 0, SEGMENT, 0, rng.uniform(0.7, 1.3), rd.HEDGE, VEGETATION, 0.13, rng.random())
            # distant buildings behind the park keep the skyline
            xf = side * rng.uniform(32.0, 45.0)
            rows.add((xf, 0, z0), EZ, EY, 0, SEGMENT, 0, rng.uniform(8.0, 30.0), rd.FACADE, BUILDING,
                     rng.uniform(0.2, 0.5), rng.random())
        else:  # open lot with a low wall and a sign
            xw = side * 9.0
            rows.add((xw, 0, z0), EZ, EY, 0, SEGMENT, 0, rng.uniform(1.0, 2.2), rd.WALL, WALL, rng.uniform(0.2, 0.5), rng.random())
            xf = side * rng.uniform(20.0, 35.0)
            rows.add((xf, 0, z0), EZ, EY, 0, SEGMENT, 0, rng.uniform(5.0, 14.0), rd.FACADE, BUILDING,
                     rng.uniform(0.2, 0.5), rng.random())
        # street furniture on the sidewalk edge
        if int(round(z0 / SEGMENT)) % 3 == (0 if side > 0 else 1):
            self._streetlight(rows, lights, side, z0 + 2.0)
        if rng.random() < 0.22:
            self._sign(rows, rng, side * rng.uniform(5.7, 6.2), z0 + rng.uniform(0, SEGMENT))
        if rng.random() < 0.12:  # bollard / short post
            _billboard(rows, side * 5.75, 0, z0 + rng.uniform(0, SEGMENT), 0.14, 1.0, rd.METAL, POLE, 0.35, rng.random())

    def _tree(self, rows: _Rows, rng: np.random.Generator, x: float, z: float) -> None:
        trunk_h = rng.uniform(1.8, 3.2)
        _billboard(rows, x, 0, z, rng.uniform(0.25, 0.45), trunk_h + 0.5, rd.BARK, VEGETATION, 0.12, rng.random())
        cw, ch = rng.uniform(2.5, 5.5), rng.uniform(3.0, 6.0)
        _billboard(rows, x, trunk_h, z - 0.05, cw, ch, rd.FOLIAGE, VEGETATION, rng.uniform(0.1, 0.2), rng.random(),
                   shape=rd.ELLIPSE)
        # a second, offset crown gives less regular outlines
        _billboard(rows, x + rng.uniform(-0.8, 0.8), trunk_h + rng.uniform(0.5, 1.5), z - 0.1, cw * 0.75, ch * 0.7,
                   rd.FOLIAGE, VEGETATION, rng.uniform(0.1, 0.2), rng.random(), shape=rd.ELLIPSE)

    def _streetlight(self, rows: _Rows, lights: list, side: float, z: float) -> None:
        x = side * 5.8
        h = 7.5
        _billboard(rows, x, 0, z, 0.2, h, rd.METAL, POLE, 0.35, 0.3)
        arm = -side * 1.8
        xa0, xa1 = sorted((x, x + arm))
        rows.add((xa0, h - 0.15, z), EX, EY, 0, xa1 - xa0, 0, 0.15, rd.METAL, POLE, 0.35, 0.4)
        lx = x + arm
        rows.add((lx - 0.35, h - 0.35, z - 0.02), EX, EY, 0, 0.7, 0, 0.22, rd.LAMP, POLE, 0.6,
                 60.0 if self.night else 0.0)
        if self.night:
            lights.append((lx, h - 0.4, z, 6.0))

    def _sign(self, rows: _Rows, rng: np.random.Generator, x: float, z: float) -> None:
        _billboard(rows, x, 0, z, 0.08, 2.2, rd.METAL, POLE, 0.3, 0.2)
        shape = rd.ELLIPSE if rng.random() < 0.5 else rd.RECT
        rows.add((x - 0.3, 2.1, z - 0.02), EX, EY, 0, 0.6, 0, 0.6, rd.SIGN, TRAFFIC_SIGN, rng.uniform(0.5, 0.9), rng.random(),
                 shape=shape)

    def _traffic_light(self, rows: _Rows, rng: np.random.Generator, x: float, z: float) -> None:
        _billboard(rows, x, 0, z, 0.16, 3.2, rd.METAL, POLE, 0.25, 0.1)
        rows.add((x - 0.18, 3.2, z - 0.02), EX, EY, 0, 0.36, 0, 0.95, rd.METAL, TRAFFIC_LIGHT, 0.06, 0.2)
        lit = rng.integers(0, 3)
        for i in range(3):
            on = i == lit
            rows.add((x - 0.11, 3.3 + 0.3 * i, z - 0.04), EX, EY, 0, 0.22, 0, 0.22, rd.LAMP, TRAFFIC_LIGHT,
                     0.5 if on else 0.08, (8.0 if self.night else 1.5) if on else 0.0, shape=rd.ELLIPSE)

    # --- evaluation at time t ------------------------------------------------------------
    def primitives(self, t: float, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
        """(primitive table, lights (L, 4): x, y, z, intensity) visible around the camera at ``t``."""
        zc = pose.c[2]
        i0 = np.searchsorted(self.zmin, zc - VIEW_BEHIND - self.max_len)
        i1 = np.searchsorted(self.zmin, zc + VIEW_AHEAD)
        sel = self.static[i0:i1]
        sel = sel[self.zmax[i0:i1] >= zc - VIEW_BEHIND]
        parts = [self.ground, sel]
        if len(self.objs):
            o = self.objs
            az = o[:, 1] + o[:, 2] * t
            vz = o[:, 2].copy()
            lead = o[:, 3] == 1
            az[lead] = pose.lead_z
            vz[lead] = pose.lead_v
            vis = (az > zc - VIEW_BEHIND - 5) & (az < zc + VIEW_AHEAD)
            rows_vis = vis[self.dyn_obj]
            if rows_vis.any():
                d = self.dyn[rows_vis].copy()
                obj = self.dyn_obj[rows_vis]
                d[:, rd.O] += o[obj, 0]
                d[:, rd.O + 2] += az[obj]
                d[:, rd.VEL + 2] = vz[obj]
                anim = self.dyn_anim[rows_vis]
                moving = anim != 0
                if moving.any():
                    # walking: alternately lift legs and swing arms
                    ph = o[obj, 4] + 2 * np.pi * o[obj, 5] * t
                    s = np.sin(ph) * np.sign(anim)
                    lift = np.where(np.abs(anim) == 1, 0.12 * np.clip(s, 0, None), 0.06 * s) * (o[obj, 5] > 0)
                    d[:, rd.V0] += np.where(moving, lift, 0.0)
                    d[:, rd.V1] += np.where(moving & (np.abs(anim) != 1), lift, 0.0)
                parts.append(d)
        prims = np.ascontiguousarray(np.concatenate(parts))
        lights = self.lights
        if len(lights):
            lights = lights[np.abs(lights[:, 2] - zc) < 90.0]
        return prims, np.ascontiguousarray(lights)
