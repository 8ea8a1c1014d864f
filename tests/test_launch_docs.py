"""Launch files document themselves: every <arg> has doc=, so `roslaunch --ros-args` lists them."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

LAUNCH = sorted((Path(__file__).resolve().parents[1] / "launch").glob("*.launch"))


@pytest.mark.parametrize("path", LAUNCH, ids=[p.name for p in LAUNCH])
def test_every_arg_has_doc(path):
    args = ET.parse(path).getroot().iter("arg")
    missing = [a.get("name") for a in args if not (a.get("doc") or "").strip()]
    assert not missing, f"{path.name}: args without doc=: {missing}"
