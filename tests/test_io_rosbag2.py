"""Every real event stream in: rosbag2 (sqlite3 and mcap, CDR), event_camera_msgs/EventPacket in
every encoding, event_array_msgs/EventArray, and an `evdistill info` that never misreads.

Fixtures are written here by real writers in the exact formats: rosbags' rosbag2 Writer (CDR
made by rosbags' typestore from the ROS1 bytes of the package's encoders) and the package's
ROS1 BagWriter. The same scene in every container must give the same events, frames and
samples.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from evdistill_ros.events import Events
from evdistill_ros.io.bag import BagError, bag_info, read_events
from evdistill_ros.io.bag_layout import ros2_typestore
from evdistill_ros.io.bag_writer import BagWriter
from evdistill_ros.io.convert import convert_event_packets, convert_to_ros1
from evdistill_ros.io.samples import detect_format, iter_bag_samples
from evdistill_ros.wire.event_camera_msgs import event_packet_definition, EVENT_PACKET_MD5, encode_event_packet
from evdistill_ros.wire.sensor_msgs import encode_image

H, W = 40, 60
T0 = 1_700_000_000_000_000_000
FRAME_NS = 50_000_000
EV_TOPIC, IMG_TOPIC, LAB_TOPIC = "/dvs/events", "/dvs/image_raw", "/dvs/labels"


def scene(seed: int = 0, frames: int = 6):
    rng = np.random.default_rng(seed)
    packets = []
    for k in range(frames):
        n = int(rng.integers(200, 600))
        us = np.sort(rng.integers(0, FRAME_NS // 1000, n))
        t = T0 + k * FRAME_NS + us * 1000
        packets.append(Events(rng.integers(0, W, n), rng.integers(0, H, n), t, rng.integers(0, 2, n)))
    images = [rng.integers(0, 256, (H, W), dtype=np.uint8) for _ in range(frames)]
    labels = [rng.integers(0, 6, (H, W), dtype=np.uint8) for _ in range(frames)]
    return packets, images, labels


def frame_stamp(k: int) -> int:
    return T0 + (k + 1) * FRAME_NS


def write_ros1(path, encoding: str | None, msgtype: str = "event_camera_msgs/msg/EventPacket") -> None:
    """encoding None: dvs_msgs/EventArray; else an EventPacket-layout type in that encoding."""
    packets, images, labels = scene()
    with BagWriter(path) as bag:
        for k, ev in enumerate(packets):
            if encoding is None:
                bag.write_events(EV_TOPIC, ev, H, W, stamp_ns=int(ev.t[0]))
            else:
                raw = encode_event_packet(ev, H, W, encoding=encoding, time_base=int(ev.t[0]) // 1000 * 1000)
                bag.write_raw(EV_TOPIC, msgtype, int(ev.t[0]), raw, msgdef=event_packet_definition(), md5=EVENT_PACKET_MD5)
            bag.write_image(IMG_TOPIC, frame_stamp(k), images[k], "mono8")
            bag.write_image(LAB_TOPIC, frame_stamp(k), labels[k], "mono8")


def write_rosbag2(path, storage: str, encoding: str, msgtype: str = "event_camera_msgs/msg/EventPacket") -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = ros2_typestore([])
    packets, images, labels = scene()
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    with Writer(path, version=8, storage_plugin=plugin) as w:
        ev_c = w.add_connection(EV_TOPIC, msgtype, typestore=store)
        img_c = w.add_connection(IMG_TOPIC, "sensor_msgs/msg/Image", typestore=store)
        lab_c = w.add_connection(LAB_TOPIC, "sensor_msgs/msg/Image", typestore=store)
        for k, ev in enumerate(packets):
            raw = encode_event_packet(ev, H, W, encoding=encoding, time_base=int(ev.t[0]) // 1000 * 1000)
            w.write(ev_c, int(ev.t[0]), store.ros1_to_cdr(raw, msgtype))
            for conn, img in ((img_c, images[k]), (lab_c, labels[k])):
                w.write(conn, frame_stamp(k), store.ros1_to_cdr(encode_image(img, frame_stamp(k), "mono8"),
                                                                 "sensor_msgs/msg/Image"))


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("bags")
    out = {"dvs": d / "dvs.bag", "ros1_libcaer_cmp": d / "cmp.bag", "ros1_event_array_msgs": d / "eam.bag",
           "db3_libcaer_cmp": d / "r2_db3", "mcap_libcaer": d / "r2_mcap", "mcap_event_array_msgs": d / "r2_eam"}
    write_ros1(out["dvs"], None)
    write_ros1(out["ros1_libcaer_cmp"], "libcaer_cmp")
    write_ros1(out["ros1_event_array_msgs"], "mono", "event_array_msgs/msg/EventArray")
    write_rosbag2(out["db3_libcaer_cmp"], "sqlite3", "libcaer_cmp")
    write_rosbag2(out["mcap_libcaer"], "mcap", "libcaer")
    write_rosbag2(out["mcap_event_array_msgs"], "mcap", "libcaer", "event_array_msgs/msg/EventArray")
    return out


ALL = ["dvs", "ros1_libcaer_cmp", "ros1_event_array_msgs", "db3_libcaer_cmp", "mcap_libcaer", "mcap_event_array_msgs"]


@pytest.mark.parametrize("name", ALL)
def test_every_container_gives_the_same_events(bags, name):
    want = Events.concatenate(scene()[0])
    got = read_events(bags[name], EV_TOPIC)
    for a in "xytp":
        assert np.array_equal(getattr(got, a), getattr(want, a)), (name, a)


@pytest.mark.parametrize("name", ALL)
def test_info_counts_exactly_and_lists_every_topic(bags, name):
    info = bag_info(bags[name])
    n = sum(len(e) for e in scene()[0])
    ev = info["topics"][EV_TOPIC]
    assert ev["events"] == n and ev["sensor_size"] == {"height": H, "width": W}
    assert ev["first_event_ns"] == min(int(e.t[0]) for e in scene()[0])
    assert info["topics"][IMG_TOPIC] == {"type": "sensor_msgs/Image", "md5": info["topics"][IMG_TOPIC]["md5"],
                                         "messages": 6}
    assert info["format"] == ("rosbag2" if name.startswith(("db3", "mcap")) else "ros1")


def test_rosbag2_files_and_folders_are_recognised(bags):
    folder = bags["mcap_libcaer"]
    (mcap,) = folder.glob("*.mcap")
    (db3,) = bags["db3_libcaer_cmp"].glob("*.db3")
    for p in (folder, mcap, db3, bags["dvs"]):
        assert detect_format(p) == "bag"
        assert bag_info(p)["topics"][EV_TOPIC]["events"] > 0
    broken = folder.parent / "broken.mcap"
    broken.write_bytes(b"\x89MCAP0\r\n" + b"\0" * 40)
    with pytest.raises(BagError, match="broken.mcap"):
        bag_info(broken)


@pytest.mark.parametrize("name", ["mcap_libcaer", "db3_libcaer_cmp"])
def test_rosbag2_quirks_of_real_recorders_read(bags, name, tmp_path):
    """A lone .mcap / .db3 (no metadata.yaml: the file says enough), in a folder or alone, and a
    metadata.yaml whose storage_identifier is empty (seen in the wild) read as the bag does."""
    import shutil

    import yaml

    want = Events.concatenate(scene()[0])
    (data,) = [f for f in bags[name].iterdir() if f.suffix in (".mcap", ".db3")]
    lone = tmp_path / f"lone{data.suffix}"
    shutil.copy(data, lone)
    folder = tmp_path / "lone_folder"
    folder.mkdir()
    shutil.copy(data, folder / data.name)
    empty_id = tmp_path / "empty_id"
    shutil.copytree(bags[name], empty_id)
    meta = yaml.safe_load((empty_id / "metadata.yaml").read_text())
    meta["rosbag2_bagfile_information"]["storage_identifier"] = ""
    (empty_id / "metadata.yaml").write_text(yaml.safe_dump(meta))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for p in (lone, folder, empty_id):
        assert detect_format(p) == "bag"
        got = read_events(p, EV_TOPIC)
        for a in "xytp":
            assert np.array_equal(getattr(got, a), getattr(want, a)), (p, a)
        info = bag_info(p)
        assert info["topics"][IMG_TOPIC]["messages"] == 6 and info["topics"][EV_TOPIC]["messages"] == 6
        samples = list(iter_bag_samples(p, image_topic=IMG_TOPIC, labels_topic=LAB_TOPIC, events_topic=EV_TOPIC))
        assert len(samples) == 6 and all(s.label is not None for s in samples)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written beside the user's files
    assert meta["rosbag2_bagfile_information"]["storage_identifier"] == ""


def test_image_only_and_unknown_types_are_listed_never_parsed(tmp_path):
    """Regression: bag_info asked rosbags for the messages of the dvs connections; with none,
    rosbags returned every message and they were parsed as EventArray."""
    path = tmp_path / "img.bag"
    with BagWriter(path) as bag:
        bag.write_image(IMG_TOPIC, T0, np.zeros((4, 5), np.uint8), "mono8")
        bag.write_raw("/other", "std_msgs/msg/String", T0, b"\x03\x00\x00\x00abc")
    info = bag_info(path)
    assert info["topics"]["/other"] == {"type": "std_msgs/String", "md5": info["topics"]["/other"]["md5"],
                                        "messages": 1}
    assert "events" not in info["topics"][IMG_TOPIC]


@pytest.mark.parametrize("name", ["dvs", "db3_libcaer_cmp", "mcap_event_array_msgs"])
def test_samples_are_identical_from_every_container(bags, name):
    ref = list(iter_bag_samples(bags["dvs"], events_topic=EV_TOPIC, image_topic=IMG_TOPIC, labels_topic=LAB_TOPIC))
    got = list(iter_bag_samples(bags[name], events_topic=EV_TOPIC, image_topic=IMG_TOPIC, labels_topic=LAB_TOPIC))
    assert len(got) == len(ref) == 6
    for a, b in zip(got, ref):
        assert a.t_ns == b.t_ns and np.array_equal(a.events, b.events)
        assert np.array_equal(a.aps, b.aps) and np.array_equal(a.label, b.label)


def test_rosbag2_to_ros1_keeps_every_message(bags, tmp_path):
    out = tmp_path / "copy.bag"
    counts = convert_to_ros1(bags["db3_libcaer_cmp"], out, progress=False)
    assert counts["messages"] == 18
    src, dst = bag_info(bags["db3_libcaer_cmp"]), bag_info(out)
    for topic, t in src["topics"].items():
        assert dst["topics"][topic]["messages"] == t["messages"]
    assert dst["topics"][EV_TOPIC]["type"] == "event_camera_msgs/EventPacket"
    assert dst["topics"][EV_TOPIC]["md5"] == EVENT_PACKET_MD5
    assert dst["topics"][EV_TOPIC]["events"] == src["topics"][EV_TOPIC]["events"]
    # and the packets become dvs_msgs for tools that only speak that
    dvs = tmp_path / "dvs.bag"
    c = convert_event_packets(bags["mcap_libcaer"], dvs, progress=False)
    assert c["messages"] == 6 and c["copied"] == 12
    assert bag_info(dvs)["topics"][EV_TOPIC]["type"] == "dvs_msgs/EventArray"


def test_info_cli_on_rosbag2(bags):
    out = subprocess.run([sys.executable, "-m", "evdistill_ros.cli", "info", str(bags["mcap_event_array_msgs"]),
                          "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["topics"][EV_TOPIC]["type"] == "event_array_msgs/EventArray"
    assert info["topics"][EV_TOPIC]["events"] == sum(len(e) for e in scene()[0])
