# Copyright 2026 celegans_autofocus maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Worm detection on drawn frames (dark, bright, blurred worms), target tracking and crop windows."""
import math

import cv2
import numpy as np
import pytest

from celegans_autofocus.core.detection import (
    Detection, DetectorConfig, TargetTracker, WormCropper, WormDetector, crop_image, crop_window,
)
from celegans_autofocus.core.images import ImageError

FRAME = (1944, 2592)  # (H, W)


def draw_worm_frame(rng: np.random.Generator, centres: list[tuple[float, float]], blur_px: float = 0.0,
                    polarity: int = -1, shape: tuple[int, int] = FRAME, contrast: float = 70.0,
                    noise: float = 5.0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Wavy 650x45 px worms (dark: polarity -1, bright: +1) on a vignetted, speckled background.

    Returns the uint8 frame and each worm's true centroid (x, y) in px.
    """
    h, w = shape
    yy, xx = np.ogrid[0:h, 0:w]
    frame = 150.0 - 25.0 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2)
    worms = np.zeros(shape, np.float32)
    truth = []
    for cx, cy in centres:
        angle = rng.uniform(0, math.pi)
        t = np.linspace(-325, 325, 60)
        wave = 40 * np.sin(t / 80)
        px = cx + t * math.cos(angle) - wave * math.sin(angle)
        py = cy + t * math.sin(angle) + wave * math.cos(angle)
        mask = np.zeros(shape, np.uint8)
        cv2.polylines(mask, [np.stack([px, py], 1).round().astype(np.int32)], False, 1, 45)
        ys, xs = np.nonzero(mask)
        truth.append((float(xs.mean()), float(ys.mean())))
        worms = np.maximum(worms, mask)
    frame = (frame + polarity * contrast * worms).astype(np.float32)
    if blur_px > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), blur_px)
    for _ in range(150):  # dust particles
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.circle(frame, centre, int(rng.integers(1, 4)), float(rng.uniform(110, 180)), -1)
    frame += rng.normal(0, noise, shape).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8), truth


def match(detections, truth, tol_px=60.0):
    """Each true centroid -> distance to its nearest detection (inf if none within tol)."""
    return [min((math.dist(d.centroid_px, t) for d in detections), default=math.inf) for t in truth]


@pytest.fixture(scope="module")
def detector():
    return WormDetector()


@pytest.mark.parametrize("polarity,blur_px", [(-1, 0.0), (1, 0.0), (-1, 12.0), (1, 20.0)])
def test_detects_dark_bright_and_blurred_worms(detector, polarity, blur_px):
    rng = np.random.default_rng(int(blur_px) + polarity + 2)
    frame, truth = draw_worm_frame(rng, [(700, 600), (1900, 1300)], blur_px=blur_px, polarity=polarity)
    found = detector.detect(frame)
    assert len(found) == 2
    assert max(match(found, truth)) < 20.0
    for d in found:
        x0, y0, w, h = d.bbox_px
        assert any(x0 <= tx <= x0 + w and y0 <= ty <= y0 + h for tx, ty in truth)
        assert 0.5 * 650 * 45 < d.area_px < 4 * 650 * 45
    assert found[0].area_px >= found[1].area_px


def test_no_worm_no_detection(detector):
    frame, _ = draw_worm_frame(np.random.default_rng(3), [])
    assert detector.detect(frame) == []


def test_scratches_and_faint_blobs_are_not_worms(detector):
    frame, _ = draw_worm_frame(np.random.default_rng(3), [])
    cv2.line(frame, (100, 300), (1500, 420), 60, 4)  # a dark straight scratch, 4 px wide
    cv2.ellipse(frame, (1800, 1200), (300, 120), 30, 0, 360, 160, -1)  # faint patch (lawn), +10 levels
    assert detector.detect(frame) == []


def test_uint16_frames_and_other_sizes(detector):
    frame, truth = draw_worm_frame(np.random.default_rng(4), [(640, 500)], shape=(1000, 1300))
    found = detector.detect(frame.astype(np.uint16) * 257)
    assert len(found) == 1 and match(found, truth)[0] < 20.0


def test_scaled_config_finds_worms_in_smaller_images():
    frame, truth = draw_worm_frame(np.random.default_rng(6), [(800, 700), (1900, 1200)])
    half = cv2.resize(frame, (1296, 972), interpolation=cv2.INTER_AREA)
    found = WormDetector(DetectorConfig().scaled(0.5)).detect(half)
    assert len(found) == 2
    assert max(match(found, [(x / 2, y / 2) for x, y in truth])) < 10.0
    with pytest.raises(ValueError, match="scale"):
        DetectorConfig().scaled(0.0)


def test_bad_frames_are_rejected(detector):
    with pytest.raises(ImageError, match="2-D"):
        detector.detect(np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(ImageError, match="empty"):
        detector.detect(np.zeros((0, 40), np.uint8))
    with pytest.raises(ImageError, match="non-finite"):
        detector.detect(np.full((40, 40), np.nan, np.float32))
    with pytest.raises(ValueError, match="background_px"):
        DetectorConfig(downsample=8, background_px=10)


def test_worm_at_the_border_gets_a_clamped_window(detector):
    frame, truth = draw_worm_frame(np.random.default_rng(5), [(2500, 120)])
    found = detector.detect(frame)
    assert len(found) == 1 and match(found, truth)[0] < 40.0
    x0, y0, w, h = crop_window(found[0].centroid_px, 750, frame.shape)
    assert (w, h) == (750, 750) and x0 + w == 2592 and y0 == 0
    assert crop_image(frame, (x0, y0, w, h)).shape == (750, 750)


# --------------------------------------------------------------------------- crop windows

@pytest.mark.parametrize("centre,fov,expected", [
    ((1296, 972), 500, (1046, 722, 500, 500)),
    ((10, 10), 500, (0, 0, 500, 500)),
    ((2590, 1940), 1250, (2592 - 1250, 1944 - 1250, 1250, 1250)),
    ((1296, 972), "full", (0, 0, 2592, 1944)),
    ((1296, 972), None, (0, 0, 2592, 1944)),
    ((100, 972), 2000, (0, 0, 2000, 1944)),
])
def test_crop_window(centre, fov, expected):
    assert crop_window(centre, fov, FRAME) == expected


@pytest.mark.parametrize("fov", [0, -500, 2.5, True, "500"])
def test_crop_window_rejects_bad_fov(fov):
    with pytest.raises(ValueError, match="fov_px"):
        crop_window((10, 10), fov, FRAME)


def test_crop_window_rejects_nonfinite_centre():
    with pytest.raises(ValueError, match="finite"):
        crop_window((float("nan"), 3.0), 500, FRAME)


# --------------------------------------------------------------------------- tracking

def det(x: float, y: float, area: int = 30000) -> Detection:
    return Detection((float(x), float(y)), (int(x) - 50, int(y) - 50, 100, 100), area)


def test_tracker_acquires_nearest_centre_and_follows_it():
    tracker = TargetTracker(frame_size_px=(2592, 1944), max_jump_px=150)
    state = tracker.update([det(200, 200, 90000), det(1250, 950)])
    assert state.target.centroid_px == (1250, 950) and not state.switched and state.switches == 0
    for step in range(1, 6):  # the target walks towards the other worm; the other stays put
        state = tracker.update([det(200, 200, 90000), det(1250 - 100 * step, 950 - 40 * step)])
        assert state.target.centroid_px == (1250 - 100 * step, 950 - 40 * step)
    assert state.switches == 0


def test_tracker_holds_through_short_loss_and_switches_after_long_loss():
    tracker = TargetTracker(max_jump_px=100, reacquire_after_frames=3)
    tracker.update([det(1300, 1000)])
    lost = tracker.update([det(300, 300)])  # far away: not the target
    assert lost.target is None and lost.center_px == (1300, 1000) and lost.lost_frames == 1
    assert tracker.update([]).lost_frames == 2
    back = tracker.update([det(1320, 1010), det(300, 300)])  # reappears within max_jump: same worm
    assert back.target.centroid_px == (1320, 1010) and not back.switched and back.lost_frames == 0
    for expected_lost in (1, 2):
        assert tracker.update([det(300, 300)]).lost_frames == expected_lost
    switched = tracker.update([det(300, 300)])
    assert switched.switched and switched.switches == 1 and switched.target.centroid_px == (300, 300)


def test_tracker_largest_rule_and_empty_start():
    tracker = TargetTracker(select="largest")
    assert tracker.update([]) == tracker.update([])
    assert tracker.update([]).center_px is None
    assert tracker.update([det(1296, 972, 100), det(100, 100, 5000)]).target.area_px == 5000


@pytest.mark.parametrize("kwargs", [{"select": "biggest"}, {"max_jump_px": 0}, {"reacquire_after_frames": 0}])
def test_tracker_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        TargetTracker(**kwargs)


def test_detect_and_track_on_a_moving_drawn_worm(detector):
    """End to end: the tracker keeps the worm that starts near the centre while both move."""
    rng = np.random.default_rng(7)
    tracker = TargetTracker()
    for step in range(3):
        frame, truth = draw_worm_frame(rng, [(1296 + 60 * step, 972), (500, 400 + 60 * step)])
        state = tracker.update(detector.detect(frame))
        assert math.dist(state.center_px, truth[0]) < 25.0
    assert state.switches == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_detects_optics_worms_at_every_defocus(seed):
    """Physical simulator frames (core/optics.py) at quarter size: the worm is found, dark or haloed.

    It is the largest detection (where the tracker starts); crossing tracks on the agar may add a small one
    (seed 1, -100 steps).
    """
    from celegans_autofocus.core.optics import OpticsConfig, StackRenderer, make_scene

    config = OpticsConfig()
    scene = make_scene(np.random.default_rng(seed), config, n_worms=1)
    renderer = StackRenderer(scene, config, out_shape=(486, 648), seed=seed, max_offset_steps=200)
    detector = WormDetector(DetectorConfig().scaled(0.25))
    true_xy = [c * 0.25 for c in scene.worms[0].centroid_px]
    for offset in (0, 30, -30, 100, -100, 200, -200):
        found = sorted(detector.detect(renderer.frame(offset)), key=lambda d: -d.area_px)
        assert found and math.dist(found[0].centroid_px, true_xy) < 8.0, offset  # quarter-size px (32 full-frame px)
        assert all(d.area_px < found[0].area_px / 4 for d in found[1:]), offset


# --------------------------------------------------------------------------- the per-frame pipeline

def test_worm_cropper_centres_the_fov_on_the_worm_at_any_frame_width():
    frame, truth = draw_worm_frame(np.random.default_rng(11), [(900, 700)])
    cropper = WormCropper(fov_px=500)
    first = cropper(np.full_like(frame, 150))                 # nothing seen yet: the frame centre
    assert first.state.target is None and first.window_px == (1046, 722, 500, 500)
    full = cropper(frame)
    assert full.state.target is not None and math.dist(full.center_px, truth[0]) < 40
    x0, y0, w, h = full.window_px
    assert (w, h) == (500, 500) and math.dist((x0 + 250, y0 + 250), truth[0]) < 40
    small = cv2.resize(frame, (648, 486), interpolation=cv2.INTER_AREA)   # a 4x binned recording
    quarter = cropper(small)                                   # new size: rebuilt, lengths scaled
    assert cropper.scale == pytest.approx(0.25) and quarter.window_px[2:] == (125, 125)
    assert math.dist(quarter.center_px, (truth[0][0] / 4, truth[0][1] / 4)) < 12
    assert WormCropper(fov_px=0)(frame).window_px == (0, 0, 2592, 1944)


@pytest.mark.parametrize("kwargs", [{"fov_px": -1}, {"full_width_px": 0}, {"select": "brightest"},
                                    {"max_jump_px": 0}])
def test_worm_cropper_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        WormCropper(**kwargs)
