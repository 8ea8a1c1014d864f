"""Topic name presets for the recordings users have, used by training, evaluation and nodes.

    PRESETS: dict name -> TopicPreset(events, image, labels, camera_info, height, width)
      "mvsec"  MVSEC bags: /davis/left/events, /davis/left/image_raw, /davis/left/camera_info
      "davis"  rpg_dvs_ros driver defaults: /dvs/events, /dvs/image_raw, /dvs/camera_info
      "sim"    this package's simulator: MVSEC names + /davis/left/labels (mono8, 255 = ignore)
      "ddd17"  bags written by `evdistill convert ddd17`: /dvs/events, /dvs/image_raw
      "dsec"   bags written by `evdistill convert dsec`: /dsec/left/{events,image,labels}
    preset(name) -> TopicPreset            ValueError naming the known presets otherwise
    detect_preset(bag) -> TopicPreset      the first preset whose event topic the bag has

`labels` and `camera_info` are None where the recording has no such topic; height/width are
the sensor size (0 where the preset does not fix it; the event messages carry it anyway).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

from .bag import Bag, topics
from .recordings import FileRecording


@dataclass(frozen=True)
class TopicPreset:
    name: str
    events: str
    image: str
    labels: str | None = None
    camera_info: str | None = None
    height: int = 0
    width: int = 0

    def with_overrides(self, events: str | None = None, image: str | None = None,
                       labels: str | None = None) -> "TopicPreset":
        """A copy with the given topics replaced (None keeps the preset's)."""
        return replace(self, events=events or self.events, image=image or self.image,
                       labels=labels if labels is not None else self.labels)


PRESETS: dict[str, TopicPreset] = {
    "mvsec": TopicPreset("mvsec", "/davis/left/events", "/davis/left/image_raw", None,
                         "/davis/left/camera_info", 260, 346),
    "davis": TopicPreset("davis", "/dvs/events", "/dvs/image_raw", None, "/dvs/camera_info"),
    "sim": TopicPreset("sim", "/davis/left/events", "/davis/left/image_raw", "/davis/left/labels",
                       "/davis/left/camera_info", 260, 346),
    "ddd17": TopicPreset("ddd17", "/dvs/events", "/dvs/image_raw", None, None, 260, 346),
    # bags written by `evdistill convert dsec`: rectified events on the labelled 440 x 640
    "dsec": TopicPreset("dsec", "/dsec/left/events", "/dsec/left/image", "/dsec/left/labels", None, 440, 640),
}


def preset(name: str) -> TopicPreset:
    """The preset called `name`; ValueError listing the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown topic preset {name!r}; known: {', '.join(PRESETS)}") from None


def detect_preset(bag: str | os.PathLike | Bag) -> TopicPreset:
    """Pick the preset matching a bag's topics ("sim" before "mvsec" when labels are present);
    `bag` is a path or an opened `Bag`."""
    have = bag.topics if isinstance(bag, (Bag, FileRecording)) else topics(bag)
    for name in ("sim", "mvsec", "davis", "ddd17", "dsec"):
        p = PRESETS[name]
        if p.events in have and (p.labels is None or p.labels in have):
            return p
    raise ValueError(
        f"{getattr(bag, 'path', bag)}: no known event topic ({', '.join(sorted({p.events for p in PRESETS.values()}))}); "
        f"topics: {sorted(have)}; name the topics explicitly"
    )
