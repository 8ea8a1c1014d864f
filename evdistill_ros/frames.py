"""APS frames: the one conversion from a camera image to what networks and pictures use.

Training extraction (io.pair_writer), inference (models.preprocess: the node, evaluation) and
pictures (render) all call these, so the same frame gives the same pixels everywhere.

    canonical(image, encoding) -> (H, W) uint8 | (H, W) uint16 | (H, W, 3) uint8 RGB
        from a decoded sensor_msgs/Image: bgr8 / bgra8 / rgba8 become RGB, the rest as is
    to_u8(image) -> uint8            mono16 -> the high byte (>> 8); uint8 unchanged
    to_gray_u8(image) -> (H, W) uint8
        RGB -> ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B, rounded); mono16 -> >> 8
    to_rgb_u8(image) -> (H, W, 3) uint8
        RGB(A) -> RGB; a grey frame is repeated to three channels (a colour network on a grey camera)
    to_frame(image, mode) -> the frame a network of `mode` ("gray" | "rgb", FRAME_MODES) takes
    resize(array, (h, w), nearest=False)
        (H, W), (H, W, C) images or (C, H, W) float embeddings; cv2 INTER_AREA (antialiased
        when shrinking), INTER_NEAREST for labels. Used for every resize that happens before
        a network sees a frame or an embedding.

3-channel arrays are RGB everywhere in the library; the decoders convert at the edge.
"""
from __future__ import annotations

import numpy as np

BT601 = np.array([0.299, 0.587, 0.114], np.float32)
FRAME_MODES = ("gray", "rgb")


def canonical(image: np.ndarray, encoding: str) -> np.ndarray:
    """A decoded sensor_msgs/Image in the library's convention (colour as RGB, alpha dropped)."""
    if image.ndim == 3:
        if encoding.startswith("bgr"):
            return np.ascontiguousarray(image[..., 2::-1])
        return np.ascontiguousarray(image[..., :3])
    return image


def to_u8(image: np.ndarray) -> np.ndarray:
    """uint16 -> its high byte (mono16 sensors fill the top bits); uint8 unchanged."""
    image = np.asarray(image)
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ValueError(f"APS frame: unsupported dtype {image.dtype} (expected uint8 or uint16)")
    return image


def to_gray_u8(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) RGB(A), uint8 or uint16 -> (H, W) uint8 grey (BT.601 luma)."""
    image = to_u8(image)
    if image.ndim == 3:
        if image.shape[2] == 1:
            return np.ascontiguousarray(image[..., 0])
        if image.shape[2] not in (3, 4):
            raise ValueError(f"APS frame: {image.shape[2]} channels (expected 1, 3 or 4)")
        g = image[..., :3].astype(np.float32) @ BT601
        return np.clip(np.rint(g), 0, 255).astype(np.uint8)
    if image.ndim != 2:
        raise ValueError(f"APS frame: expected (H, W) or (H, W, C), got shape {image.shape}")
    return image


def to_rgb_u8(image: np.ndarray) -> np.ndarray:
    """(H, W) grey or (H, W, 1|3|4) RGB(A), uint8 or uint16 -> (H, W, 3) uint8 RGB."""
    image = to_u8(image)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        grey = image if image.ndim == 2 else image[..., 0]
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"APS frame: expected (H, W) or (H, W, 1|3|4), got shape {image.shape}")
    return np.ascontiguousarray(image[..., :3])


def frame_channels(mode: str) -> int:
    """Channels of the frames of `mode`: 1 for "gray", 3 for "rgb"."""
    if mode not in FRAME_MODES:
        raise ValueError(f"frame mode must be one of {FRAME_MODES}, got {mode!r}")
    return 1 if mode == "gray" else 3


def to_frame(image: np.ndarray, mode: str) -> np.ndarray:
    """The frame a network of `mode` takes: to_gray_u8 for "gray", to_rgb_u8 for "rgb"."""
    frame_channels(mode)
    return to_gray_u8(image) if mode == "gray" else to_rgb_u8(image)


def resize(a: np.ndarray, size: tuple[int, int] | None, nearest: bool = False, channels_first: bool | None = None
           ) -> np.ndarray:
    """`a` at (height, width) = `size` (None or the same size: unchanged).

    Layout: 2-D (H, W); 3-D is (C, H, W) for floating arrays (embeddings) and (H, W, C) for
    integer ones (images), unless `channels_first` says otherwise.
    """
    import cv2  # imported here: cv2 costs ~0.5 s (measured cold) and most callers never resize

    if size is None:
        return a
    h, w = int(size[0]), int(size[1])
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    if a.ndim == 2:
        return a if a.shape == (h, w) else cv2.resize(a, (w, h), interpolation=interp)
    first = a.dtype.kind == "f" if channels_first is None else channels_first
    if first:
        if a.shape[1:] == (h, w):
            return a
        return np.stack([cv2.resize(np.ascontiguousarray(c), (w, h), interpolation=interp) for c in a])
    if a.shape[:2] == (h, w):
        return a
    return np.stack([cv2.resize(np.ascontiguousarray(a[..., c]), (w, h), interpolation=interp)
                     for c in range(a.shape[2])], axis=2)
