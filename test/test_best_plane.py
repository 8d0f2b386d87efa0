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

"""``core.focus.best_plane`` (the ``auto`` labeller): drawn curves for each contrast mode, simulated stacks."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from celegans_autofocus.core import focus
from celegans_autofocus.core.dataset.labelling import (AGREE_STEPS, Measured, label_dataset, label_measured,
                                                       measure_stack)
from celegans_autofocus.core.dataset.labels import read_labels
from celegans_autofocus.core.dataset.layout import Stack
from celegans_autofocus.core.dataset.synthetic import write_synthetic_dataset
from celegans_autofocus.core.optics import OpticsConfig

Z = np.arange(-60, 61, 4)


def bump(centre: float, width: float = 12.0, height: float = 1.0) -> np.ndarray:
    return height * np.exp(-0.5 * ((Z - centre) / width) ** 2)


def curves(skew: np.ndarray, contrast: np.ndarray, gradient: np.ndarray) -> dict[str, np.ndarray]:
    return {"detail_skewness": skew, "vollath_f5": contrast, "brenner": gradient}


def pick(skew, contrast, gradient, agree_steps: float = AGREE_STEPS) -> focus.BestPlane:
    return focus.best_plane(Z, curves(skew, contrast, gradient), agree_steps)


def test_emission_reads_the_contrast_peak_not_the_skewness():
    # fluorescence: bright sparse detail, so detail_skewness is strongly negative and largest far from focus
    skew = -4.0 - 3.0 * bump(12, 30)
    got = pick(skew, 10 + 50 * bump(12), 3 + bump(16))
    assert (got.z_index, got.mode, got.measure, got.disagreement) == (12, "emission", "vollath_f5", None)
    assert int(Z[np.argmax(skew)]) in (-60, 60)  # what detail_skewness alone would label: an end of the stack


def test_emission_flags_a_gradient_peak_elsewhere():
    got = pick(-4.0 - bump(0), 10 + 50 * bump(0), bump(-40))
    assert got.z_index == 0 and "brenner at z=-40" in got.disagreement


def test_phase_object_is_read_at_its_contrast_dip():
    # a transparent cell: contrast vanishes at focus (z=-8) and grows on both sides
    contrast = 1.0 + 40 * (bump(-32) + bump(16))
    contrast -= 0.98 * contrast.min() * bump(-8, 4)
    contrast = np.maximum(contrast, 0.5)
    skew = 0.3 * np.tanh((Z + 8) / 10.0)  # dark on one side of focus, bright on the other
    got = pick(skew, contrast, 5 + 3 * bump(-36) + 3 * bump(20) - 2 * bump(-8, 6))
    assert (got.z_index, got.mode, got.disagreement) == (-8, "phase", None)
    flat_gradient = pick(skew, contrast, bump(50))
    assert flat_gradient.z_index == -8 and "brenner neither peaks nor dips" in flat_gradient.disagreement


def test_an_unbacked_phase_dip_gives_way_to_a_backed_dark_detail_peak():
    """Seed 3002 random/crop500_3: a 51% contrast dip at 4 nothing backs; skewness and brenner peak at 16 (truth 18).

    Just past PHASE_DIP the contrast mode is in doubt: the reading another measure backs is taken, still flagged.
    """
    contrast = 40 + 30 * (bump(-52) + bump(40)) - 25 * bump(4, 8)
    assert focus._contrast_dip(contrast)[0] >= focus.PHASE_DIP
    got = pick(1 + 3 * bump(16), contrast, 2 + 5 * bump(16))
    assert (got.z_index, got.mode, got.measure) == (16, "absorption", "detail_skewness")
    assert got.disagreement.startswith("contrast mode ambiguous: contrast dips") and "peaks at z=16" in got.disagreement


def test_a_phase_dip_nothing_backs_gives_way_to_the_dark_detail_peak_unbacked_too():
    """Seed 3006 phase_only/crop500_1: a 54% contrast dip at 8, skewness peak at 32, brenner peak at 48 (truth 39).

    Neither reading is backed; the dip was read (31 steps off). Over seeds 3000-3007 an unbacked dip 30% deep or more
    was within 8 steps of the truth on 2 of 33 stacks, the dark-detail peak on 32: the dark edges of light refracted
    out of the pupil move the dip off focus. A skewness curve without an interior peak still leaves the dip.
    """
    contrast = 40 + 30 * (bump(-52) + bump(40)) - 25 * bump(4, 8)
    assert focus._contrast_dip(contrast)[0] >= focus.PHASE_DIP
    got = pick(1 + 3 * bump(16), contrast, 2 + 5 * bump(52))  # brenner backs neither
    assert (got.z_index, got.mode, got.measure) == (16, "absorption", "detail_skewness")
    assert got.disagreement.startswith("contrast mode ambiguous: contrast dips")
    assert "peaks at z=16, which nothing backs either (brenner peak z=52" in got.disagreement
    monotone = pick(np.tanh(Z / 20.0), contrast, 2 + 5 * bump(52))  # dark detail grows toward an end: no peak
    assert (monotone.z_index, monotone.mode) == (4, "phase") and "brenner neither" in monotone.disagreement
    wiggle = -Z / 60.0 + 0.2 * bump(-52, 2)  # a narrow maximum at -52, but 0.1 above the end: no peak
    assert int(Z[np.argmax(wiggle)]) == -52 and focus._peak(Z, wiggle)[1:] == (-52, -52)
    no_peak = pick(wiggle, contrast, 2 + 5 * bump(52))
    assert (no_peak.z_index, no_peak.mode) == (4, "phase")


def test_a_gradient_maximum_at_an_end_of_the_stack_backs_nothing():
    """Seed 3009 random/full648_2 (held out): a field with hardly any detail, truth 10; skewness peaks at -52 here.

    Gradient energy rose toward the stack's end (-60 here): its maximum there is no stationary point of the curve,
    yet it "backed" a skewness peak one sample away, and the stack was missed by 202 steps without a flag.
    """
    gradient = 1 + 0.02 * (Z - 60) ** 2 / 100  # highest at z=-60, no interior extremum
    got = pick(1 + 3 * bump(-52, 6), 20 + bump(10, 30), gradient)
    assert got.z_index == -52 and got.disagreement is not None
    assert got.disagreement.startswith("absorption: detail_skewness peaks at z=-52, brenner at z=-60 (an end of the")
    inside = pick(1 + 3 * bump(-52, 6), 20 + bump(10, 30), 1 + bump(-56, 20))  # an interior maximum still backs it
    assert inside.z_index == -52 and inside.disagreement is None


def test_absorption_backed_by_a_gradient_dip():
    # coarse sampling: gradient energy dips at focus between two defocused maxima; any extremum is stationary
    got = pick(1 + 4 * bump(8), np.linspace(10, 30, Z.size), 1 + bump(-30) + bump(44) - 0.8 * bump(8, 6))
    assert got.z_index == 8 and got.disagreement is None
    noise_dip = 1 + 2 * bump(-40, 20) - 0.02 * bump(8, 2)  # a wiggle below EXTREMUM_PROMINENCE_FRAC
    flagged = pick(1 + 4 * bump(8), np.linspace(10, 30, Z.size), noise_dip)
    assert "no contrast peak or brenner peak or dip lies" in flagged.disagreement


def test_a_contrast_dip_alone_does_not_back_the_dark_detail_peak():
    """A nearly transparent worm (seed 3003 random/crop500_1): true focus 26; skewness and a 37% contrast dip at 16.

    Where absorption-like contrast mixes with phase contrast, both move off focus together; the old rule took the
    dip as backing and was silently 10 steps off. Gradient energy (its peak far off, at the phase lobe) backs nothing.
    """
    contrast = 300 + 180 * bump(72, 14) - 110 * bump(16, 14)  # lower flank ~300, dip ~190: 37% deep
    assert 0.3 < focus._contrast_dip(contrast)[0] < focus.PHASE_DIP
    gradient = 12 + 50 * bump(72, 14)
    got = pick(1 + 3 * bump(16), contrast, gradient)
    assert (got.z_index, got.mode) == (16, "absorption")
    assert got.disagreement.startswith("contrast mode ambiguous: detail_skewness peaks at z=16 on a contrast dip")
    assert "at z=16 37% deep (a phase object: >= 50%), and brenner neither peaks nor dips" in got.disagreement
    backed = pick(1 + 3 * bump(16), contrast, gradient - 6 * bump(16, 6))  # gradient energy dips there too
    assert backed.z_index == 16 and backed.disagreement is None
    contrast_peak = pick(1 + 3 * bump(8), 20 + 10 * bump(4), gradient)  # an absorption contrast peak backs it
    assert contrast_peak.z_index == 8 and contrast_peak.disagreement is None


def test_noise_dominated_detail_is_flagged_even_when_backed():
    """Camera noise adds a constant to every plane's detail energy (seed 3002 random/crop500_5: brenner 29 +- 0.4).

    The skewness is then scaled by the signal's share of the detail, which peaks where the phase contrast
    peaks, off focus: flagged although brenner's (noisy) maximum sits on the pick.
    """
    skew = 0.1 + 0.9 * bump(-48, 10)
    noisy = pick(skew, 2 + 3 * bump(-52), 29 + 0.7 * bump(-48))
    assert noisy.z_index == -48 and noisy.disagreement.startswith("noisy: brenner varies by only 2% of its floor")
    clean = pick(skew, 2 + 3 * bump(-52), 0.1 + 0.7 * bump(-48))  # the same signal without the noise floor
    assert clean.z_index == -48 and clean.disagreement is None
    near = (Z >= -56) & (Z <= -40)  # a short stack within a depth of field: gradient energy cannot vary much there
    short = focus.best_plane(Z[near], {m: v[near] for m, v in curves(skew, 2 + 3 * bump(-52), 0.1 + bump(-48)).items()},
                             AGREE_STEPS)
    assert short.z_index == -48 and short.disagreement is None


def scaled(sigma_px: float, skew, contrast, gradient) -> dict[str, np.ndarray]:
    return {focus.at_scale(m, sigma_px): v for m, v in curves(skew, contrast, gradient).items()}


def test_a_noise_dominated_stack_is_read_on_the_prefiltered_images():
    """Seed 3004 random/full648_0 (truth 6): raw brenner varies by 25%, the raw skewness peak sits at -36 (a miss).

    Pre-filtered at 1 px the noise keeps 1/13 of its variance: brenner varies by 3x and the dark detail peaks at 0.
    The coarser reading stays flagged (the filter blurs the finest detail: a deeper depth of field).
    """
    raw = curves(0.1 + 0.9 * bump(-36, 10), 2 + 3 * bump(-52), 29 + 4 * bump(-48))
    at1 = scaled(1, 0.2 + bump(0, 10), 3 + 2 * bump(-40), 2 + 6 * bump(-60) - 1.5 * bump(0, 6))
    old = focus.best_plane(Z, raw, AGREE_STEPS)  # the curves of the previous rule: flagged, 36 steps off
    assert old.z_index == -36 and old.disagreement.startswith("noisy: brenner varies by only 14%")
    got = focus.best_plane(Z, {**raw, **at1}, AGREE_STEPS)
    assert (got.z_index, got.mode, got.measure) == (0, "absorption", "detail_skewness@1")
    assert got.disagreement.startswith("noisy: brenner varies by only 14%")
    assert got.disagreement.endswith("read instead on the images pre-filtered at sigma 1 px, which average the noise "
                                     "away but blur the detail that fixes the plane (a deeper depth of field)")
    still = scaled(1, 0.2 + bump(-12, 10), 3 + 2 * bump(-40), 20 + 4 * bump(-12))  # 1 px not enough: 2 px
    at2 = scaled(2, 0.2 + bump(4, 10), 3 + 2 * bump(-40), 1 + 3 * bump(4))
    got = focus.best_plane(Z, {**raw, **still, **at2}, AGREE_STEPS)
    assert (got.z_index, got.measure) == (4, "detail_skewness@2") and "sigma 2 px" in got.disagreement
    assert "; there:" not in got.disagreement  # backed there
    finest = focus.best_plane(Z, {**raw, **at1, **at2}, AGREE_STEPS)  # the finest clean scale wins
    assert finest.measure == "detail_skewness@1"
    noisy_at2 = scaled(2, 0.2 + bump(4, 10), 3 + 2 * bump(-40), 20 + 3 * bump(4))
    got = focus.best_plane(Z, {**raw, **still, **noisy_at2}, AGREE_STEPS)  # noise everywhere: flagged, says where
    assert got.measure == "detail_skewness@2" and "sigma 2 px" in got.disagreement
    assert "; there: noisy: brenner varies by only 15%" in got.disagreement


def test_a_clean_stack_ignores_its_prefiltered_curves():
    """Scales are consulted only when noise dominates the raw pixels: a clean stack keeps its pick and flags."""
    clean = curves(0.1 + 0.9 * bump(-48, 10), 2 + 3 * bump(-52), 0.1 + 0.7 * bump(-48))
    elsewhere = {**scaled(1, 0.2 + bump(20, 10), 3 + bump(20), 1 + bump(20)),
                 **scaled(2, 0.2 + bump(20, 10), 3 + bump(20), 1 + bump(20))}
    for given in (clean, {**clean, **elsewhere}):
        got = focus.best_plane(Z, given, AGREE_STEPS)
        assert (got.z_index, got.measure, got.disagreement) == (-48, "detail_skewness", None)
    unbacked = curves(1 + 4 * bump(8), 20 + 10 * bump(-50, 30), bump(56))
    got = focus.best_plane(Z, {**unbacked, **elsewhere}, AGREE_STEPS)
    assert got.z_index == 8 and got.measure == "detail_skewness" and "brenner at z=56" in got.disagreement


def test_noise_makes_contrast_dips_too():
    """A phase reading over noise-dominated gradient energy is flagged noisy, then read on the pre-filtered images."""
    contrast = 10 + 5 * (bump(-40) + bump(40)) - 12 * bump(28, 4)  # a 'dip' the noise drew at 28
    raw = curves(0.1 + bump(0, 10), contrast, 29 + 0.8 * bump(28))
    assert focus._contrast_dip(contrast)[0] >= focus.PHASE_DIP
    old = focus.best_plane(Z, raw, AGREE_STEPS)
    assert (old.z_index, old.mode) == (28, "phase") and old.disagreement.startswith("noisy: brenner varies by only 3%")
    got = focus.best_plane(Z, {**raw, **scaled(1, 0.2 + bump(0, 10), 3 + 2 * bump(0), 1 + 3 * bump(0))}, AGREE_STEPS)
    assert (got.z_index, got.mode, got.measure) == (0, "absorption", "detail_skewness@1")
    assert got.disagreement.startswith("noisy: brenner varies by only 3%") and "; there:" not in got.disagreement


def _dots_stack(path: Path, noise_dn: float) -> Stack:
    """Faint sharp dark dots (in focus at z=12) on an uneven ground, phase contrast linear in defocus, camera noise."""
    rng = np.random.default_rng(1)
    n = 128
    dots = np.zeros((n, n))
    dots[tuple(rng.integers(8, n - 8, (2, 25)))] = 1.0
    dots = cv2.GaussianBlur(dots, (0, 0), 1.5)
    dots /= dots.max()
    ground = cv2.GaussianBlur(rng.standard_normal((n, n)), (0, 0), 12.0)
    phase = cv2.Laplacian(cv2.GaussianBlur(rng.standard_normal((n, n)), (0, 0), 4.0), cv2.CV_64F)
    path.mkdir()
    files = {}
    for z in Z:
        blur_px = 0.5 + abs(z - 12) / 8
        image = (150 + 4 * ground / ground.std() - 4 * (1.5 / blur_px) ** 2 * cv2.GaussianBlur(dots, (0, 0), blur_px)
                 + 0.1 * (z - 12) * phase / phase.std() + noise_dn * rng.standard_normal((n, n)))
        files[int(z)] = path / f"z_{int(z)}.png"
        cv2.imwrite(str(files[int(z)]), np.clip(np.rint(image), 0, 255).astype(np.uint8))
    return Stack("p", path.name, path, files, {})


def test_label_reads_a_noisy_image_stack_at_a_coarser_scale(tmp_path):
    """The raw curves alone (the previous rule) are noise-dominated: flagged, 8 steps off.

    ``label`` then measures the pre-filtered curves too (a second pass over that stack only) and reads the
    plane there (still flagged: a coarser reading). A clean stack is measured raw only.
    """
    measured = measure_stack(_dots_stack(tmp_path / "noisy", 8.0), focus.AUTO)
    assert set(measured.curves) == set(focus.RULE_CURVES)
    raw_only = Measured(measured.stack, focus.AUTO, {m: measured.curves[m] for m in focus.RULE_MEASURES}, [])
    old = label_measured(raw_only, use_stack_best=False)
    assert old.ambiguous_reason.startswith("noisy:") and abs(old.measured_best - 12) == 8
    res = label_measured(measured, use_stack_best=False)
    assert res.measured_best == 12 and "pre-filtered at sigma 1 px" in res.ambiguous_reason
    assert {r.measure for r in res.rows} == {"auto:detail_skewness@1"}
    clean = measure_stack(_dots_stack(tmp_path / "clean", 0.5), focus.AUTO)
    assert set(clean.curves) == set(focus.RULE_MEASURES)
    res = label_measured(clean, use_stack_best=False)
    assert not any("@" in r.measure for r in res.rows) and "noisy" not in (res.ambiguous_reason or "")


def test_absorption_without_any_backing_is_flagged():
    got = pick(1 + 4 * bump(8), 20 + 10 * bump(-50, 30), bump(56))
    assert got.z_index == 8 and "brenner at z=56" in got.disagreement
    assert "no contrast peak or brenner peak or dip lies within 8 steps" in got.disagreement


def test_flat_topped_peak_is_read_at_its_middle_and_flagged_when_broad():
    skew = 1 + np.clip(1.2 - np.abs(Z - 20) / 30, 0, 1)  # flat from z=14 to z=26 ... within 2 % up to 28 wide
    skew[Z == 28] += 0.01  # noise makes an edge the maximum
    got = pick(skew, 20 + 10 * bump(-50, 30), bump(20))
    assert got.z_index == 20 and got.disagreement is None
    wide = 1 + np.clip(2.0 - np.abs(Z - 20) / 30, 0, 1)
    wide[Z == 48] += 0.001
    got = pick(wide, 20 + 10 * bump(-50, 30), bump(20))
    assert got.z_index == 20 and "broad detail_skewness peak" in got.disagreement


def test_a_broad_lopsided_top_is_read_where_the_gradient_energy_peaks_within_it():
    """A binned field: dark detail flat over z=-28..8, lopsided (falls slower below); focus at 0.

    The top's middle (-10) follows the lopsidedness; brenner's centre of symmetry, kept inside the top, is focus.
    """
    skew = 1 + np.clip(1.5 - np.abs(Z) / np.where(Z < 0, 60, 20), 0, 1)
    skew[Z == -28] += 0.002  # noise makes an edge the maximum
    assert focus._peak(Z, skew) == (-10, -28, 8)
    got = pick(skew, 20 + 10 * bump(-50, 30), 5 + bump(0, 30))
    assert got.z_index == 0 and "broad detail_skewness peak, z=-28..8" in got.disagreement
    outside = pick(skew, 20 + 10 * bump(-50, 30), 5 + bump(40, 30))  # brenner beyond the top: its nearest end
    assert outside.z_index == 8 and "broad detail_skewness peak" in outside.disagreement


def test_half_max_centre_reads_the_flanks_not_the_top():
    even = 5 + np.clip(2.0 - np.abs(Z - 6) / 20, 0, 1)  # flat top z=-14..26, even about 6
    even[Z == 24] += 0.01  # noise makes an edge the maximum
    assert int(Z[np.argmax(even)]) == 24 and focus.half_max_centre(Z, even) == pytest.approx(6, abs=0.5)
    low_right = np.where(Z > 30, 2.0, 5.0) + bump(-10, 15)  # flanks end at different heights: the higher one sets
    assert focus.half_max_centre(Z, low_right) == pytest.approx(-10, abs=1)


def test_two_sample_top_keeps_the_maximum():
    skew = 1 + bump(0, 4)
    skew[Z == 4] = skew[Z == 0] - 0.001
    assert pick(skew, 20 + 10 * bump(-50, 30), bump(0)).z_index == 0


def _stack(z: np.ndarray) -> Stack:
    return Stack("p", "s", Path("."), {int(k): Path(f"z_{int(k)}.png") for k in z}, {})


def test_label_measured_flags_the_disagreement_and_keeps_vollath_f5_available():
    c = curves(1 + 4 * bump(8), 20 + 10 * bump(-50, 30), bump(56))
    measured = Measured(_stack(Z), focus.AUTO, {m: dict(zip(Z.tolist(), v)) for m, v in c.items()}, [])
    res = label_measured(measured, use_stack_best=False)
    assert res.measured_best == 8 and res.mode == "absorption" and "no contrast peak or" in res.ambiguous_reason
    assert all(r.ambiguous and r.best_index == 8 and r.measure == "auto:detail_skewness" for r in res.rows)
    paper = label_measured(Measured(_stack(Z), "vollath_f5", {"vollath_f5": measured.curves["vollath_f5"]}, []),
                           use_stack_best=False)
    assert paper.measured_best == int(Z[np.argmax(c["vollath_f5"])]) == -52 and paper.rows[0].measure == "vollath_f5"


def test_phase_pick_next_to_a_missing_image_is_flagged():
    contrast = 1.0 + 40 * (bump(-32) + bump(16))
    contrast -= 0.98 * contrast.min() * bump(-8, 4)
    c = curves(0.1 * np.ones_like(Z, dtype=float), np.maximum(contrast, 0.5), 5 - 2 * bump(-8, 6))
    z = Z[Z != -4]
    keep = Z != -4
    measured = Measured(_stack(z), focus.AUTO, {m: dict(zip(z.tolist(), v[keep])) for m, v in c.items()}, [])
    res = label_measured(measured, use_stack_best=False)
    assert res.mode == "phase" and res.measured_best == -8 and "missing image" in res.ambiguous_reason


@pytest.mark.parametrize("name, config, must_hit", [
    ("default", OpticsConfig(), True),
    ("phase_only", OpticsConfig(body_absorb_per_um=0.0002, cuticle_absorb_per_um=0.002, inclusion_scale=0.1), False),
    ("absorbing_low_mag", OpticsConfig(um_per_px=3.1, body_absorb_per_um=0.006, inclusion_scale=1.5), False),
])
def test_simulated_stacks_are_labelled_within_8_steps_or_flagged(tmp_path, name, config, must_hit):
    """Label synthetic-module stacks (whole field binned 8x): never silently more than 8 steps off.

    On the default optics, within 8 steps.
    """
    write_synthetic_dataset(tmp_path, plates=1, stacks_per_plate=2, range_steps=120, step_every=6, seed=7,
                            frame_shape=(243, 324), config=config)
    report = label_dataset(tmp_path, use_stack_best=False)
    assert not report.failed and len(report.labelled) == 2
    for res in report.labelled:
        truth = res.stack.meta["true_best_index"]
        hit = abs(res.measured_best - truth) <= 8
        assert hit or (res.ambiguous_reason and not must_hit), (name, truth, res.measured_best, res.ambiguous_reason)
    rows = read_labels(tmp_path / "labels.csv")
    assert {r.measure.split(":")[0] for r in rows} == {focus.AUTO}


def test_real_fluorescence_series_from_dfnn():
    """Measured curves of two published focus series (test/data, MIT): auto within one image, skewness at an end."""
    data = json.loads((Path(__file__).parent / "data" / "dfnn_focus_curves.json").read_text())
    assert data["licence"].startswith("MIT")
    flags = {}
    for name, stack in data["stacks"].items():
        z = np.array(stack["z_index"])
        c = {m: np.array(v) for m, v in stack["curves"].items()}
        got = focus.best_plane(z, c, AGREE_STEPS)
        assert got.mode == "emission" and abs(got.z_index - stack["best_index"]) <= 1, name
        assert int(z[np.argmax(c["detail_skewness"])]) in (z[0], z[-1]), name  # the old default: the defocused end
        flags[name] = got.disagreement
    assert flags["mitochondria_stack"] is None
    assert "brenner at z=-10" in flags["microtubules_stack"]  # noisy gradient curve: right, but flagged
