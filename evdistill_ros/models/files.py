"""One way in from a network file to a `NetworkCard` (and the network): a checkpoint of this
package or the EvDistill authors', an .onnx written by `evdistill export`, or a teacher card.

    read_card(path) -> NetworkCard                     without building the network
    load_network(path, device="cpu") -> (nn.Module in eval mode, NetworkCard)
"""
from __future__ import annotations

import os

import torch
from torch import nn

from .card import NetworkCard
from .teacher_card import load_image_network, read_image_network_metadata


def read_card(path: str | os.PathLike) -> NetworkCard:
    """The card of a checkpoint, an exported .onnx or a teacher card."""
    return NetworkCard.from_dict(read_image_network_metadata(path), path=os.fspath(path))


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, NetworkCard]:
    """The network in eval mode on `device` and its card (an .onnx runs through ONNX Runtime as a module)."""
    net, meta = load_image_network(path, device)
    return net, NetworkCard.from_dict(meta, path=os.fspath(path))
