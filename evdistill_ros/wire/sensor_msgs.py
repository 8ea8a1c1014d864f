"""numpy codec for the ROS1 wire bytes of `sensor_msgs/Image` and `sensor_msgs/CameraInfo`."""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .ros1 import CodecError, parse_header, serialize_header

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
}


@dataclass(frozen=True)
class ImageMsg:
    stamp_ns: int
    encoding: str
    image: np.ndarray  # (H, W) or (H, W, C), native byte order
    frame_id: str = ""


def decode_image(data: bytes | memoryview, max_pixels: int | None = None) -> ImageMsg:
    """Decode a serialized `sensor_msgs/Image` into a numpy array (a copy, row padding removed).

    The copy is never larger than the message; `max_pixels` also refuses images with more pixels."""
    buf = memoryview(data).cast("B")
    _, stamp_ns, frame_id, off = parse_header(buf)
    if len(buf) < off + 12:
        raise CodecError("truncated Image: no room for height/width/encoding")
    height, width, n = struct.unpack_from("<III", buf, off)
    off += 12
    encoding = bytes(buf[off : off + n]).decode("ascii", errors="replace")
    off += n
    if len(buf) < off + 9:
        raise CodecError("truncated Image: no room for is_bigendian/step/data")
    bigendian, step, size = struct.unpack_from("<BII", buf, off)
    off += 9
    if encoding not in ENCODINGS:
        raise CodecError(f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    if max_pixels is not None and height * width > max_pixels:
        raise CodecError(f"Image {width}x{height} has more than {max_pixels} pixels")
    dtype, channels = ENCODINGS[encoding]
    if bigendian and dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes or size != step * height or len(buf) != off + size:
        raise CodecError(
            f"Image {width}x{height} {encoding}: step {step}, data {size} bytes, {len(buf) - off} present; "
            f"need step >= {row_bytes} and data == step * height"
        )
    rows = np.frombuffer(buf, dtype=np.uint8, count=size, offset=off).reshape(height, step)[:, :row_bytes]
    image = rows.copy().view(dtype).reshape((height, width, channels) if channels > 1 else (height, width))
    return ImageMsg(stamp_ns, encoding, image.astype(dtype.newbyteorder("="), copy=False), frame_id)


def default_encoding(image: np.ndarray) -> str:
    if image.dtype == np.uint8 and image.ndim == 2:
        return "mono8"
    if image.dtype == np.uint16 and image.ndim == 2:
        return "mono16"
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return "rgb8"
    raise ValueError(f"no image encoding for dtype {image.dtype} and shape {image.shape}")


def encode_image(image: np.ndarray, stamp_ns: int, encoding: str | None = None, frame_id: str = "") -> bytes:
    """Serialize a numpy image as `sensor_msgs/Image` (little endian, no row padding)."""
    encoding = encoding or default_encoding(image)
    dtype, channels = ENCODINGS[encoding]
    expected_ndim = 2 if channels == 1 else 3
    if image.dtype != dtype or image.ndim != expected_ndim or (channels > 1 and image.shape[2] != channels):
        raise ValueError(f"{encoding} needs {dtype} with {channels} channel(s), got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    data = np.ascontiguousarray(image, dtype=dtype.newbyteorder("<")).tobytes()
    enc = encoding.encode("ascii")
    step = width * channels * dtype.itemsize
    return b"".join(
        (
            serialize_header(stamp_ns, frame_id),
            struct.pack("<III", height, width, len(enc)),
            enc,
            struct.pack("<BII", 0, step, len(data)),
            data,
        )
    )


def encode_camera_info(
    stamp_ns: int,
    height: int,
    width: int,
    K: np.ndarray,
    D: np.ndarray | None = None,
    distortion_model: str = "plumb_bob",
    frame_id: str = "",
) -> bytes:
    """Serialize a `sensor_msgs/CameraInfo` for an unrectified pinhole camera (R = I, P = [K | 0])."""
    K = np.asarray(K, dtype="<f8").reshape(3, 3)
    D = np.zeros(5, "<f8") if D is None else np.asarray(D, dtype="<f8").ravel()
    P = np.hstack([K, np.zeros((3, 1))]).astype("<f8")
    model = distortion_model.encode("ascii")
    return b"".join(
        (
            serialize_header(stamp_ns, frame_id),
            struct.pack("<III", height, width, len(model)),
            model,
            struct.pack("<I", len(D)),
            D.tobytes(),
            K.tobytes(),
            np.eye(3, dtype="<f8").tobytes(),
            P.tobytes(),
            struct.pack("<IIIIIIB", 0, 0, 0, 0, 0, 0, 0),  # binning_x/y, roi x/y/h/w, do_rectify
        )
    )
