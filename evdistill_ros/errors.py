"""The package's errors by layer, so callers (and tests) tell them apart by type, not wording.

    EvdistillError   every error below; a ValueError, so code that catches ValueError keeps working
    ConfigError      a configuration a user wrote: training config keys and values, teacher cards
    DataLayoutError  a data set, recording or cache not laid out as its format says (or damaged)
    CheckpointError  a network file that cannot be read, holds non-finite weights or does not fit
    WireFormatError  bytes that are not the wire format they claim (wire.CodecError is one)

Each carries a one-line message naming the file, key or field at fault.
"""
from __future__ import annotations


class EvdistillError(ValueError):
    """Base of the package's errors (a ValueError)."""


class ConfigError(EvdistillError):
    """A configuration value, key or teacher-card field that cannot be used."""


class DataLayoutError(EvdistillError):
    """A data set, recording or cache that is not laid out as its format says."""


class CheckpointError(EvdistillError):
    """A network file that cannot be read, holds non-finite weights or does not fit its network."""


class WireFormatError(EvdistillError):
    """Bytes that are not the message or file format they claim to be."""
