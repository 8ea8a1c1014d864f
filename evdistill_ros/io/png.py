"""PNG reading and writing for the dataset layouts (OpenCV underneath, RGB order in numpy).

    read_png(path, *, what="image") -> (H, W) uint8/uint16 or (H, W, 3) uint8 RGB
    write_png(path, image) -> None     (H, W) grey / label, or (H, W, 3) RGB; parents created

Errors name the file: a missing or unreadable PNG is a ValueError, never a None image.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def read_png(path: str | os.PathLike, *, what: str = "image") -> np.ndarray:
    import cv2

    path = Path(path)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot read {what} {path} (missing or not an image)")
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        img = np.ascontiguousarray(img[:, :, ::-1])  # BGR -> RGB
    return img


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.asarray(image)
    if image.ndim == 3:
        image = np.ascontiguousarray(image[:, :, ::-1])  # RGB -> BGR
    if not cv2.imwrite(str(path), image):
        raise ValueError(f"cannot write {path}")
