"""Event images and overlays: colours and shapes."""
import numpy as np
import pytest

from evdistill_ros.classes import PALETTE
from evdistill_ros.render import event_image, overlay, polarity_maps


def test_event_image_colours_on_blue_off_red_background_white():
    e = np.zeros((2, 3, 4), np.float32)
    e[0, 0, 0] = 5  # ON
    e[1, 1, 1] = 5  # OFF
    img = event_image(e, "count")
    assert img.shape == (3, 4, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == [0, 0, 255]
    assert img[1, 1].tolist() == [255, 0, 0]
    assert img[2, 3].tolist() == [255, 255, 255]


def test_evsegnet_6ch_counts_on_channel_0_off_channel_1():
    from evdistill_ros.events import Events, embed

    ev = Events([0, 0, 3, 3, 3], [0, 0, 1, 1, 1], [0, 10, 20, 30, 40], [1, 1, 0, 0, 0])
    e = embed(ev, "evsegnet_6ch", height=2, width=4)
    on, off = polarity_maps(e, "evsegnet_6ch")
    want_on, want_off = embed(ev, "count", height=2, width=4)
    assert np.array_equal(on, want_on) and np.array_equal(off, want_off)
    assert on[0, 0] == 2 and off[1, 3] == 3 and on[1, 3] == 0 and off[0, 0] == 0
    img = event_image(e, "evsegnet_6ch")
    assert img[0, 0].tolist() == [0, 0, 255] and img[1, 3].tolist() == [255, 0, 0]


def test_voxel_grid_uses_net_polarity():
    e = np.zeros((5, 2, 2), np.float32)
    e[:, 0, 0] = 1.0
    e[:, 1, 1] = -1.0
    on, off = polarity_maps(e, "voxel_grid")
    assert on[0, 0] == 5 and off[1, 1] == 5 and on[1, 1] == 0 and off[0, 0] == 0


def test_overlay_blends_palette_and_resizes_background():
    labels = np.array([[0, 5], [255, 3]], np.uint8)
    bg = np.full((4, 4), 100, np.uint8)
    out = overlay(labels, bg, alpha=1.0)
    assert out[0, 0].tolist() == PALETTE[0].tolist() and out[0, 1].tolist() == PALETTE[5].tolist()
    assert out[1, 0].tolist() == [0, 0, 0]
    assert overlay(labels, bg, alpha=0.0)[1, 1].tolist() == [100, 100, 100]
    with pytest.raises(ValueError):
        event_image(np.zeros((4, 4)), "count")


def test_screenshot_check_sees_overlays_not_rviz_widgets():
    from evdistill_ros.ros.screenshot import coloured_fraction

    ui = np.full((90, 140, 3), 240, np.uint8)  # rviz: white "No Image" panels, grey docks, black text
    ui[:, :20] = 48
    ui[40:50, 30:100] = 0
    assert coloured_fraction(ui) == 0.0
    labels = np.arange(6).repeat(20 * 30 // 6).reshape(20, 30)
    shot = ui.copy()
    shot[10:30, 40:70] = overlay(labels, np.full((20, 30), 128, np.uint8))
    # only the grey 'background' class (70, 70, 70) blends to grey: 5 of 6 classes count
    assert coloured_fraction(shot) == pytest.approx(5 / 6 * 20 * 30 / ui[..., 0].size, rel=0.05)
