"""Synthetic DAVIS driving scenes: events, APS frames and per-pixel labels in ROS1 bags.

    from evdistill_ros.sim import simulate_sequence, simulate_dataset, SimConfig
    stats = simulate_sequence("a.bag", seconds=1.0, seed=0, width=173, height=130)

See `writer` for topics and statistics, `scene` for the street, `render` for the
rasteriser, `esim` for events and `aps` for frames. Importing this package is cheap;
numba kernels compile (and are cached) on first use.
"""
from .writer import (CAMERA_INFO_TOPIC, EVENTS_TOPIC, IMAGE_TOPIC, LABELS_TOPIC, SimConfig, sequence_seed,
                     simulate_dataset, simulate_sequence)

__all__ = ["simulate_sequence", "simulate_dataset", "SimConfig", "sequence_seed", "EVENTS_TOPIC", "IMAGE_TOPIC",
           "LABELS_TOPIC", "CAMERA_INFO_TOPIC"]
