"""Events: the structure-of-arrays type, wire codecs, representations and sliding windows."""
from .types import Events
from .codec import CodecError, EventArrayMsg, decode_event_array, encode_event_array
from .representations import REPRESENTATIONS, embed, embed_and_count, representation_channels, warmup
from .windows import SlidingWindow, Window, WindowStats, embeddings_at

__all__ = ["Events", "CodecError", "EventArrayMsg", "decode_event_array", "encode_event_array",
           "REPRESENTATIONS", "embed", "embed_and_count", "representation_channels", "warmup",
           "SlidingWindow", "Window", "WindowStats", "embeddings_at"]
