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

"""The physical simulator: signed defocus, focus at offset 0, reproducibility, windows, synth layout."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from celegans_autofocus import cli
from celegans_autofocus.core import focus, optics
from celegans_autofocus.core.optics import Balls, OpticsConfig, Scene, StackRenderer, Texture, Worm

QUIET = replace(OpticsConfig(), noise=False)
NO_BALLS = Balls(np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0))


def bare_scene(worms=(), particles: Balls = NO_BALLS) -> Scene:
    """Make a scene with flat background: only what the test puts in it."""
    flat = Texture(np.zeros((4, 4), np.float32), (-2000.0, -2000.0), 2000.0)
    return Scene(worms=tuple(worms), particles=particles, scratches=np.zeros((0, 6)),
                 background_phase=flat, background_absorb=flat, brightness=0.7, um_per_px=1.55)


def particles(absorb_per_um: float, delta_n: float, n: int = 30) -> Balls:
    rng = np.random.default_rng(0)
    return Balls(rng.uniform([620, 520], [880, 680], (n, 2)), rng.uniform(2, 6, n),
                 np.full(n, delta_n), np.full(n, absorb_per_um))


WINDOW = (500, 400, 500, 400)


@pytest.fixture(scope="module")
def worm_view():
    """One worm without inclusions, its window and the centre-line pixels of its mid-body."""
    worm = optics.make_scene(np.random.default_rng(3), QUIET, 1).worms[0]
    worm = Worm(worm.centerline_px, worm.radius_um, NO_BALLS, worm.um_per_px)
    x0, y0, w, h = worm.bbox_px
    window = (x0 - 40, y0 - 40, w + 80, h + 80)
    n = len(worm.centerline_px)
    mid = np.round(worm.centerline_px[n // 4: 3 * n // 4] - window[:2]).astype(int)
    return StackRenderer(bare_scene([worm]), QUIET, None, window, max_offset_steps=40), mid


def test_signed_defocus_flips_worm_contrast(worm_view):
    renderer, mid = worm_view
    centre = {d: float(renderer.intensity(d)[mid[:, 1], mid[:, 0]].mean()) for d in (-20, 0, 20)}
    # dz = -offset*step_um > 0 (offset -20): the worm focuses light onto its axis -> brighter.
    assert centre[-20] > centre[0] + 0.1
    assert centre[20] < centre[0] - 0.05
    images = {d: renderer.frame(d).astype(float) for d in (-20, 20)}
    assert np.abs(images[20] - images[-20]).mean() > 5  # 8-bit levels, measurably different


def test_amplitude_object_is_symmetric_and_sharpest_in_focus():
    renderer = StackRenderer(bare_scene(particles=particles(0.2, 0.0)), QUIET, None, WINDOW, max_offset_steps=20)
    sharp = {d: focus.tenengrad(renderer.intensity(d)) for d in range(-8, 9, 2)}
    assert max(sharp, key=sharp.get) == 0
    np.testing.assert_allclose(renderer.intensity(8), renderer.intensity(-8), atol=1e-4)


def test_weak_phase_object_is_invisible_in_focus_and_antisymmetric():
    renderer = StackRenderer(bare_scene(particles=particles(0.0, 0.002)), QUIET, None, WINDOW, max_offset_steps=20)
    contrast = {d: float(np.abs(renderer.intensity(d) - 1).mean()) for d in (-8, 0, 8)}
    assert contrast[0] < 0.2 * min(contrast[8], contrast[-8])
    plus, minus = renderer.intensity(8) - 1, renderer.intensity(-8) - 1
    assert np.abs(plus + minus).mean() < 0.2 * np.abs(plus).mean()


@pytest.mark.parametrize("seed", [3, 5])
def test_in_focus_image_matches_the_specimen_best(seed):
    """Within the depth of field, the image nearest offset 0 reproduces the specimen's |t|^2 best."""
    scene = optics.make_scene(np.random.default_rng(seed), QUIET, 1)
    x0, y0, w, h = scene.worms[0].bbox_px
    window = (x0 - 40, y0 - 40, w + 80, h + 80)
    grid = optics._Grid(window[0], window[1], 1.0, (window[3], window[2]))
    specimen = np.abs(optics._rasterize(scene, QUIET, grid)) ** 2
    renderer = StackRenderer(scene, QUIET, None, window, max_offset_steps=10)
    errors = {d: float(np.abs(renderer.intensity(d) - specimen).mean()) for d in range(-8, 9, 2)}
    best = min(errors, key=errors.get)
    assert abs(best) <= 2
    assert min(errors[8], errors[-8]) > 1.1 * errors[best]


@pytest.mark.parametrize("offset_steps", [0, 40])
def test_lens_blur_is_a_gaussian_psf_in_camera_px(offset_steps):
    """The lens blur convolves the intensity with a Gaussian of blur_sigma_px camera px, at any defocus."""
    scene = optics.make_scene(np.random.default_rng(4), QUIET, 1)
    x0, y0, _, _ = scene.worms[0].bbox_px
    window = (x0, y0, 240, 200)
    sharp = StackRenderer(scene, replace(QUIET, blur_sigma_px=0.0), None, window, max_offset_steps=50)
    soft = StackRenderer(scene, replace(QUIET, blur_sigma_px=3.5), None, window, max_offset_steps=50)
    expected = cv2.GaussianBlur(sharp.intensity(offset_steps), (0, 0), 3.5)
    got = soft.intensity(offset_steps)
    inner = (slice(15, -15), slice(15, -15))  # away from the reflected border of the reference blur
    assert np.abs(got - expected)[inner].max() < 0.02
    assert np.abs(got - sharp.intensity(offset_steps))[inner].max() > 0.1


def test_looks_are_named_overrides_and_real_adult_has_a_lighter_rim_and_no_halo():
    """LOOKS["real_adult"] (fitted to real adults) loses the default look's dark rim and bright halo."""
    from celegans_autofocus.core import appearance
    from celegans_autofocus.core.detection import crop_window

    assert optics.look_config("default") == OpticsConfig()
    sensor = {"step_um", "um_per_px", "frame_width_px", "frame_height_px", "wavelength_um"}
    assert not any(sensor & set(look) for look in optics.LOOKS.values())  # a look is the specimen and the optics
    with pytest.raises(ValueError, match="unknown look 'nope'; known: default, real_adult"):
        optics.look_config("nope")
    stats = {}
    for name in ("default", "real_adult"):
        config = replace(optics.look_config(name), noise=False)
        rows = []
        for seed in range(3):
            scene = optics.make_scene(np.random.default_rng(seed), config, 1)
            window = crop_window(scene.worms[0].centroid_px, 500, (1944, 2592))
            frame = StackRenderer(scene, config, None, window, max_offset_steps=1).frame(0)
            found = appearance.find_and_crop(frame, 500)
            rows.append(appearance.crop_stats(found[0], found[1].centroid_px))
        stats[name] = {k: np.median([getattr(r, k) for r in rows]) for k in ("core", "rim", "ring_p95")}
    default, real = stats["default"], stats["real_adult"]
    assert default["rim"] < default["core"] - 0.1 and default["ring_p95"] > 0.08  # dark rim, bright halo
    # as real adults (benchmarks/calibrate_optics.md): a rim no darker than the core, no halo
    assert real["rim"] > real["core"] - 0.05 and real["ring_p95"] < 0.05


def test_reproducible_with_seed():
    scene_a = optics.make_scene(np.random.default_rng(11), OpticsConfig(), 2)
    scene_b = optics.make_scene(np.random.default_rng(11), OpticsConfig(), 2)
    frames_a = StackRenderer(scene_a, OpticsConfig(), (96, 128), seed=5).frame(12.5)
    frames_b = StackRenderer(scene_b, OpticsConfig(), (96, 128), seed=5).frame(12.5)
    np.testing.assert_array_equal(frames_a, frames_b)
    other = StackRenderer(optics.make_scene(np.random.default_rng(12), OpticsConfig(), 2),
                          OpticsConfig(), (96, 128), seed=5).frame(12.5)
    assert np.abs(other.astype(int) - frames_a).mean() > 1


def test_scene_geometry_in_full_frame_px():
    config = OpticsConfig()
    scene = optics.make_scene(np.random.default_rng(4), config, 3)
    assert len(scene.worms) == 3
    for worm in scene.worms:
        x0, y0, w, h = worm.bbox_px
        cx, cy = worm.centroid_px
        assert x0 <= cx <= x0 + w and y0 <= cy <= y0 + h
        length_um = np.linalg.norm(np.diff(worm.centerline_px, axis=0), axis=1).sum() * config.um_per_px
        assert config.worm_length_um[0] - 5 <= length_um <= config.worm_length_um[1] + 5
        assert config.worm_width_um[0] / 2 <= worm.radius_um.max() <= config.worm_width_um[1] / 2


@pytest.mark.parametrize("offset_steps", [15, -150])  # the source blur before binning, and after it (wide)
@pytest.mark.parametrize("lens_blur_px", [0.0, 3.5])  # a soft lens: its sigma is in camera px at any output size
def test_out_shape_is_binned_native_render(offset_steps, lens_blur_px):
    config = replace(QUIET, blur_sigma_px=lens_blur_px)
    scene = optics.make_scene(np.random.default_rng(2), config, 2)
    x0, y0, _, _ = scene.worms[0].bbox_px
    window = (x0, y0, 320, 240)
    native = optics.render(scene, offset_steps, config, window_px=window)
    half = optics.render(scene, offset_steps, config, window_px=window, out_shape=(120, 160))
    binned = cv2.resize(native, (160, 120), interpolation=cv2.INTER_AREA)
    assert np.abs(half.astype(int) - binned).max() <= 2


def test_overlapping_windows_agree():
    scene = optics.make_scene(np.random.default_rng(2), QUIET, 2)
    x0, y0, _, _ = scene.worms[0].bbox_px
    a = optics.render(scene, -30, QUIET, window_px=(x0, y0, 200, 160))
    b = optics.render(scene, -30, QUIET, window_px=(x0 + 60, y0 + 40, 200, 160))
    assert np.abs(a[40:, 60:].astype(int) - b[:120, :140]).max() <= 2


def test_bad_window_and_shape():
    scene = optics.make_scene(np.random.default_rng(0), OpticsConfig(), 0)
    with pytest.raises(ValueError, match="window_px"):
        optics.render(scene, 0, window_px=(0, 0, 0, 10))
    with pytest.raises(ValueError, match="aspect"):
        optics.render(scene, 0, out_shape=(100, 100))
    with pytest.raises(ValueError, match="n_worms"):
        optics.make_scene(np.random.default_rng(0), OpticsConfig(), -1)


def test_synth_writes_the_dataset_layout(tmp_path: Path, capsys):
    out = tmp_path / "data"
    rc = cli.main(["synth", str(out), "--plates", "2", "--stacks-per-plate", "1", "--range-steps", "8",
                   "--step-every", "4", "--seed", "3", "--width", "216", "--worms", "2"])
    assert rc == 0
    stacks = sorted(out.glob("plates/*/*"))
    assert [s.relative_to(out).as_posix() for s in stacks] == ["plates/plate_000/stack_000",
                                                               "plates/plate_001/stack_000"]
    for stack in stacks:
        meta = yaml.safe_load((stack / "stack.yaml").read_text())
        assert meta["step_um"] == 5.0 and meta["step_every"] == 4
        assert meta["best_index"] == meta["true_best_index"] and abs(meta["best_index"]) <= 2
        assert meta["window_px"] == [0, 0, 216, 162] and meta["fov_px"] == 216
        assert len(meta["worms"]) == 2
        for worm in meta["worms"]:
            x0, y0, w, h = worm["bbox_px"]
            assert 0 <= x0 and x0 + w <= 216 and 0 <= y0 and y0 + h <= 162
        files = sorted(p.name for p in stack.glob("z_*.png"))
        assert files == sorted(f"z_{z}.png" for z in (-8, -4, 0, 4, 8))
        image = cv2.imread(str(stack / "z_0.png"), cv2.IMREAD_UNCHANGED)
        assert image.shape == (162, 216) and image.dtype == np.uint8
    # Same seed -> same images; a non-empty OUT is refused with a message naming it.
    again = tmp_path / "again"
    assert cli.main(["synth", str(again), "--plates", "2", "--stacks-per-plate", "1", "--range-steps", "8",
                     "--step-every", "4", "--seed", "3", "--width", "216", "--worms", "2"]) == 0
    for stack in stacks:
        twin = again / stack.relative_to(out)
        assert (twin / "z_4.png").read_bytes() == (stack / "z_4.png").read_bytes()
    capsys.readouterr()
    assert cli.main(["synth", str(out), "--plates", "1", "--range-steps", "4", "--width", "216"]) != 0
    assert str(out) in capsys.readouterr().err


def test_synth_look_renders_that_look_and_records_it(tmp_path: Path):
    """``--look real_adult``: the same scenes seen through the named look, whose optics stack.yaml records."""
    args = ["--plates", "1", "--stacks-per-plate", "1", "--range-steps", "4", "--step-every", "4", "--seed", "3",
            "--width", "216", "--worms", "1"]
    for look in ("default", "real_adult"):
        assert cli.main(["synth", str(tmp_path / look), *args, "--look", look]) == 0
    stacks = [tmp_path / look / "plates/plate_000/stack_000" for look in ("default", "real_adult")]
    recorded = [yaml.safe_load((s / "stack.yaml").read_text())["synthetic"]["optics"] for s in stacks]
    assert recorded[0] == OpticsConfig().to_dict() and recorded[1] == optics.look_config("real_adult").to_dict()
    images = [cv2.imread(str(s / "z_0.png"), cv2.IMREAD_UNCHANGED).astype(float) for s in stacks]
    assert np.abs(images[0] - images[1]).mean() > 1.0  # another look, not the default's pixels


def test_small_renders_of_a_crop_window_are_the_native_render_binned():
    """Check the fast path's field grid.

    A 500 px window rendered at 96 px is the native render area-averaged, far from focus too; the old
    2x-the-output grid (forced by a zero grid budget) is not.
    """
    from celegans_autofocus.core.detection import crop_window
    from celegans_autofocus.core.images import PreprocessSpec, preprocess

    scene = optics.make_scene(np.random.default_rng(7000), QUIET, 2)
    window = crop_window(scene.worms[0].centroid_px, 500, (1944, 2592))
    native = StackRenderer(scene, QUIET, None, window, max_offset_steps=210)
    small = StackRenderer(scene, QUIET, (96, 96), window, max_offset_steps=210)
    legacy = StackRenderer(scene, replace(QUIET, max_native_grid_px=0), (96, 96), window, max_offset_steps=210)
    assert small.dx_um == pytest.approx(1.55) and legacy.dx_um > 2.5
    spec = PreprocessSpec(input_px=96)
    for offset in (-200, -120, 0, 120, 200):
        ref = preprocess(native.intensity(offset), spec)
        assert np.sqrt(np.mean((preprocess(small.intensity(offset), spec) - ref) ** 2)) < 0.01
        assert np.sqrt(np.mean((preprocess(legacy.intensity(offset), spec) - ref) ** 2)) > 0.05


def test_the_full_field_on_the_band_limited_grid_crops_like_a_native_render():
    """Check a 648x486 full field (`sim`'s until 2026-12-03): rasterized natively once, propagated on a band grid.

    A 500 px window cut out of it matches the native render binned alike (RMS < 0.05 after the model's
    preprocessing) near and far from focus; the old 2x grid (forced by a zero raster budget) does not.
    """
    from celegans_autofocus.core.images import PreprocessSpec, preprocess

    scene = optics.make_scene(np.random.default_rng(7001), QUIET, 2)
    band = StackRenderer(scene, QUIET, (486, 648), max_offset_steps=210)
    old = StackRenderer(scene, replace(QUIET, max_band_raster_px=0), (486, 648), max_offset_steps=210)
    assert band.dx_um < QUIET.wavelength_um / (2 * (QUIET.na + QUIET.condenser_na)) < old.dx_um
    cx, cy = scene.worms[0].centroid_px
    x0, y0 = 4 * int(min(max(cx - 250, 0), 2092) // 4), 4 * int(min(max(cy - 250, 0), 1444) // 4)
    native = StackRenderer(scene, QUIET, None, (x0, y0, 500, 500), max_offset_steps=210)
    spec = PreprocessSpec(input_px=96)
    worst_old = 0.0
    for offset in (-200, -50, 0, 40, 200):
        ref = preprocess(cv2.resize(native.intensity(offset), (125, 125), interpolation=cv2.INTER_AREA), spec)
        rms = {}
        for name, r in (("band", band), ("old", old)):
            crop = r.intensity(offset)[y0 // 4:y0 // 4 + 125, x0 // 4:x0 // 4 + 125]
            rms[name] = float(np.sqrt(np.mean((preprocess(crop, spec) - ref) ** 2)))
        assert rms["band"] < 0.05, (offset, rms)
        worst_old = max(worst_old, rms["old"])
    assert worst_old > 0.08


def test_a_laid_egg_is_a_dark_oval_not_a_bright_lens():
    """A laid egg scatters most light out of the pupil: dark in focus, and its ball-lens caustic stays dim."""
    config = replace(QUIET, eggs_per_mm2=1.0)
    for seed in range(4):
        egg = optics._with_eggs(np.random.default_rng(seed), config, NO_BALLS, area_mm2=1e4, margin_px=0)
        one = Balls(np.array([[750.0, 600.0]]), egg.radius_um[:1], egg.delta_n[:1], egg.absorb_per_um[:1])
        renderer = StackRenderer(bare_scene(particles=one), QUIET, None, (686, 536, 128, 128), max_offset_steps=120)
        assert renderer.intensity(0)[60:68, 60:68].mean() < 0.2  # the background is 1
        assert max(float(renderer.intensity(d).max()) for d in range(-120, 121, 8)) < 2.5


def test_offset_quantum_renders_the_optics_once_per_quantum():
    """A live view (offset_quantum_steps): offsets within one quantum share the optics, the noise is new per frame."""
    scene = optics.make_scene(np.random.default_rng(3), OpticsConfig(), 1)
    live = StackRenderer(scene, OpticsConfig(), (60, 80), seed=1, offset_quantum_steps=0.25)
    exact = StackRenderer(scene, OpticsConfig(), (60, 80), seed=1)
    a, b = live.intensity(40.02), live.intensity(39.9)
    assert a is b and not a.flags.writeable
    assert np.abs(a - exact.intensity(40.0)).max() < 1e-6 < np.abs(a - exact.intensity(39.9)).max()
    assert live.intensity(40.2) is not a  # the next quantum
    assert not np.array_equal(live.frame(40.0), live.frame(40.0))  # new noise every frame


def test_background_mottle_only_absorbs_and_leaves_the_rest_of_the_scene_as_drawn(monkeypatch):
    """background_absorb_std: an in-focus mottle of lawn and agar, drawn after everything else (0: none, no draw)."""
    drawn = []
    smooth_noise = optics._smooth_noise
    monkeypatch.setattr(optics, "_smooth_noise", lambda *a: drawn.append(a[2]) or smooth_noise(*a))
    plain = optics.make_scene(np.random.default_rng(4), optics.look_config("real_adult"), 2)
    plain_draws, drawn[:] = list(drawn), []
    mottled = optics.make_scene(np.random.default_rng(4), optics.look_config("real_adult_mottled"), 2)
    assert drawn == plain_draws + [5.0, 15.0]  # off: no draw (later draws from the same generator as before)
    assert [w.centroid_px for w in plain.worms] == [w.centroid_px for w in mottled.worms]
    assert np.array_equal(plain.background_phase.values, mottled.background_phase.values)
    extra = mottled.background_absorb.values - plain.background_absorb.values
    assert extra.min() >= 0 and 0.002 < extra.std() < 0.016  # absorbs, never amplifies; a mottle, not a constant
    # in focus the mottle shows where the phase undulation vanishes: never less background texture, and for some
    # draws (its std is drawn per scene, up to background_absorb_std) far more
    ratios = []
    for seed in range(6):
        texture = []
        for look in ("real_adult", "real_adult_mottled"):
            config = replace(optics.look_config(look), read_noise_e=0.0, full_well_e=1e9)
            scene = optics.make_scene(np.random.default_rng(seed), config, 0)  # the background alone
            frame = StackRenderer(scene, config, None, (0, 0, 500, 500), seed=1).frame(0.0).astype(np.float64)
            texture.append((cv2.GaussianBlur(frame, (0, 0), 4) - cv2.GaussianBlur(frame, (0, 0), 40)).std())
        ratios.append(texture[1] / texture[0])
    assert min(ratios) >= 1.0 and max(ratios) >= 2.0, ratios
