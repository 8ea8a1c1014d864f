"""DAVIS APS frame formation: exposure (motion blur), limited dynamic range, noise, gamma.

The caller integrates the linear radiance over the exposure window (renders averaged over
time, so motion blurs) and hands the time-average to `ApsSensor.expose`. The signal, as a
fraction of full well, is ``radiance * exposure / full_well_time``; shot noise (Poisson via
its normal approximation), column fixed-pattern noise and read noise are added, light above
full well spills into its neighbourhood (blooming / glare around lamps), the result is
clipped to [0, 1], gamma-encoded and quantised to mono8. Auto exposure drives the mean
linear signal of the last frame towards ``target``, within [min_exposure, max_exposure]: at
night the longest exposure is still too short, so frames come out dark and noisy with
clipped lamps, while the log-intensity events keep the structure.

Public:
    ApsSensor(height, width, rng, fps=20.0, full_well_time=0.01, target=0.18, max_exposure_frac=0.8,
              min_exposure=5e-5, full_well_electrons=8000, read_noise=0.004, column_fpn=0.003, gamma=1/2.2)
        .first_exposure(radiance) -> seconds; .expose(mean_radiance, exposure) -> uint8 (H, W)
        .next_exposure() -> seconds (auto exposure from the last frame)
"""
from __future__ import annotations

import numpy as np


class ApsSensor:
    def __init__(self, height: int, width: int, rng: np.random.Generator, fps: float = 20.0,
                 full_well_time: float = 0.01, target: float = 0.18, max_exposure_frac: float = 0.8,
                 min_exposure: float = 5e-5, full_well_electrons: float = 8000.0, read_noise: float = 0.004,
                 column_fpn: float = 0.003, gamma: float = 1 / 2.2):
        if fps <= 0 or not 0 < max_exposure_frac <= 1 or full_well_time <= 0:
            raise ValueError(f"APS: need fps > 0, 0 < max_exposure_frac <= 1, full_well_time > 0; "
                             f"got {fps}, {max_exposure_frac}, {full_well_time}")
        self.shape = (height, width)
        self.rng = rng
        self.full_well_time = full_well_time
        self.target = target
        self.max_exposure = max_exposure_frac / fps
        self.min_exposure = min_exposure
        self.electrons = full_well_electrons
        self.read_noise = read_noise
        self.gamma = gamma
        self.fpn = rng.normal(0.0, column_fpn, width).astype(np.float32)
        self._last_mean = None
        self._last_exposure = None

    def _clamp(self, exposure: float) -> float:
        return float(np.clip(exposure, self.min_exposure, self.max_exposure))

    def first_exposure(self, radiance: np.ndarray) -> float:
        mean = float(np.mean(radiance))
        return self._clamp(self.target * self.full_well_time / max(mean, 1e-9))

    def next_exposure(self) -> float:
        if self._last_mean is None:
            raise RuntimeError("APS: next_exposure() before any frame was exposed")
        ratio = self.target / max(self._last_mean, 1e-9)
        return self._clamp(self._last_exposure * ratio ** 0.7)  # damped like a real AE loop

    def expose(self, mean_radiance: np.ndarray, exposure: float) -> np.ndarray:
        if mean_radiance.shape != self.shape:
            raise ValueError(f"APS: image shape {mean_radiance.shape} != sensor {self.shape}")
        s = mean_radiance.astype(np.float32) * np.float32(exposure / self.full_well_time)
        excess = np.maximum(s - 1.0, 0.0)
        if excess.any():
            import cv2

            sigma = max(self.shape) / 60.0
            s = s + 0.25 * cv2.GaussianBlur(np.minimum(excess, 50.0), (0, 0), sigma)
        shot = np.sqrt(np.clip(s, 0, 1) / self.electrons)
        s = s + shot * self.rng.standard_normal(self.shape, dtype=np.float32)
        s = s + self.fpn[None, :] + np.float32(self.read_noise) * self.rng.standard_normal(self.shape, dtype=np.float32)
        s = np.clip(s, 0.0, 1.0)
        self._last_mean = float(s.mean())
        self._last_exposure = exposure
        return np.round(255.0 * s ** self.gamma).astype(np.uint8)
