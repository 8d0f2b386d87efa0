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

"""Focus measures of a grayscale image. Larger means sharper (for the measure's own model).

All measures are per-pixel means, so values do not scale with image size. ``x`` is the
column (fast) axis. Definitions (I = image as float64):

- ``vollath_f4``: mean I(x,y)I(x+1,y) - mean I(x,y)I(x+2,y)   (autocorrelation difference)
- ``vollath_f5``: mean I(x,y)I(x+1,y) - mean(I)^2            (the paper's label; variance-like)
- ``brenner``: mean (I(x+2,y) - I(x,y))^2
- ``tenengrad``: mean of Gx^2 + Gy^2 with 3x3 Sobel kernels, interior pixels only
- ``normalized_variance``: var(I) / mean(I)
- ``laplacian_variance``: variance of the 4-neighbour Laplacian, interior pixels only
- ``detail_skewness``: minus the skewness of the detail D = I - G*I (G: Gaussian, sigma 8 px,
  mirrored borders), -mean(D^3) / mean(D^2)^1.5; 0 for an image without detail

Why ``detail_skewness``: a thin specimen is passive, so at focus its brightfield image is the
background minus sharp dark detail (absorption, light refracted out of the pupil): strongly
negatively skewed. Out of focus its phase structure (worm body, lawn) adds zero-mean bright and
dark fringes that grow with defocus and make variance- and gradient-type measures peak away
from focus (benchmarks/focus_measures.md). Skewness is scale-free, so it also ignores the
brightness level.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping

import cv2
import numpy as np

from .images import ImageError, check_image


def _as_float(image: np.ndarray) -> np.ndarray:
    check_image(image)
    if image.ndim != 2:
        raise ImageError(f"focus measures expect a 2-D grayscale image, got shape {image.shape}")
    if image.shape[1] < 3 or image.shape[0] < 3:
        raise ImageError(f"image too small for focus measures: {image.shape}")
    return image.astype(np.float64, copy=False)


def vollath_f4(image: np.ndarray) -> float:
    i = _as_float(image)
    return float((i[:, :-1] * i[:, 1:]).mean() - (i[:, :-2] * i[:, 2:]).mean())


def vollath_f5(image: np.ndarray) -> float:
    i = _as_float(image)
    return float((i[:, :-1] * i[:, 1:]).mean() - i.mean() ** 2)


def brenner(image: np.ndarray) -> float:
    i = _as_float(image)
    return float(((i[:, 2:] - i[:, :-2]) ** 2).mean())


def tenengrad(image: np.ndarray) -> float:
    i = _as_float(image)
    gx = (i[:-2, 2:] + 2 * i[1:-1, 2:] + i[2:, 2:]) - (i[:-2, :-2] + 2 * i[1:-1, :-2] + i[2:, :-2])
    gy = (i[2:, :-2] + 2 * i[2:, 1:-1] + i[2:, 2:]) - (i[:-2, :-2] + 2 * i[:-2, 1:-1] + i[:-2, 2:])
    return float((gx * gx + gy * gy).mean())


def normalized_variance(image: np.ndarray) -> float:
    i = _as_float(image)
    mean = i.mean()
    if mean <= 0:
        raise ImageError("normalized_variance needs a positive mean intensity")
    return float(i.var() / mean)


def laplacian_variance(image: np.ndarray) -> float:
    i = _as_float(image)
    lap = i[:-2, 1:-1] + i[2:, 1:-1] + i[1:-1, :-2] + i[1:-1, 2:] - 4 * i[1:-1, 1:-1]
    return float(lap.var())


#: Gaussian sigma (px) of the background removed by :func:`detail_skewness`.
DETAIL_SIGMA_PX = 8.0


def detail_skewness(image: np.ndarray) -> float:
    i = _as_float(image)
    detail = i - cv2.GaussianBlur(i, (0, 0), DETAIL_SIGMA_PX, borderType=cv2.BORDER_REFLECT_101)
    m2 = float((detail * detail).mean())
    if m2 <= 1e-12 * max(float((i * i).mean()), 1.0):
        return 0.0
    return float(-(detail**3).mean() / m2**1.5)


def prefiltered(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Return the image smoothed by a Gaussian of ``sigma_px`` (mirrored borders), as float64.

    White camera noise of variance s^2 keeps s^2 / (4 pi sigma_px^2) of it; worm structure several pixels
    wide survives.
    """
    return cv2.GaussianBlur(_as_float(image), (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT_101)


MEASURES: dict[str, Callable[[np.ndarray], float]] = {
    "vollath_f4": vollath_f4,
    "vollath_f5": vollath_f5,
    "brenner": brenner,
    "tenengrad": tenengrad,
    "normalized_variance": normalized_variance,
    "laplacian_variance": laplacian_variance,
    "detail_skewness": detail_skewness,
}


def at_scale(name: str, sigma_px: float) -> str:
    """Return the name of measure ``name`` taken on the image pre-filtered at ``sigma_px`` (e.g. ``brenner@2``)."""
    return f"{name}@{sigma_px:g}"


def parse_measure(name: str) -> tuple[Callable[[np.ndarray], float], float | None]:
    """Return (measure function, pre-filter sigma in px or None) of ``name``; ValueError naming the valid ones."""
    base, at, sigma = name.partition("@")
    if base not in MEASURES:
        raise ValueError(f"unknown focus measure {name!r}; choose one of {', '.join(MEASURES)} "
                         f"(or NAME@SIGMA: NAME on the image pre-filtered at SIGMA px)")
    if not at:
        return MEASURES[base], None
    try:
        sigma_px = float(sigma)
    except ValueError:
        sigma_px = float("nan")
    if not 0 < sigma_px < float("inf"):
        raise ValueError(f"focus measure {name!r}: the pre-filter sigma after '@' must be a positive number of px")
    return MEASURES[base], sigma_px


def get_measure(name: str) -> Callable[[np.ndarray], float]:
    """Look up a focus measure by name, with a clear error listing the valid ones.

    ``NAME@SIGMA`` is measure NAME on the image pre-filtered by a Gaussian of SIGMA px (:func:`prefiltered`).
    """
    fn, sigma_px = parse_measure(name)
    return fn if sigma_px is None else lambda image: fn(prefiltered(image, sigma_px))


def measure_values(image: np.ndarray, names: tuple[str, ...] | list[str]) -> dict[str, float]:
    """Return the focus measures ``names`` (:func:`get_measure` names) of one image, pre-filtering once per scale."""
    parsed = {name: parse_measure(name) for name in names}  # checks every name first
    views: dict[float | None, np.ndarray] = {}
    out = {}
    for name, (fn, sigma_px) in parsed.items():
        if sigma_px not in views:
            views[sigma_px] = image if sigma_px is None else prefiltered(image, sigma_px)
        out[name] = fn(views[sigma_px])
    return out


#: The per-image measure of the live pipeline (focus/measure, the hybrid; chosen by benchmarks/focus_measures.md).
DEFAULT_MEASURE = "detail_skewness"

# ----------------------------------------------------------------------------- best plane of a stack

#: The labeller ``label`` uses unless told otherwise: :func:`best_plane` over :data:`RULE_MEASURES`.
AUTO = "auto"
#: The curves :func:`best_plane` reads: dark-detail skewness, contrast (variance), gradient energy.
RULE_MEASURES = ("detail_skewness", "vollath_f5", "brenner")
#: The coarser scales :func:`best_plane` reads the same curves at when camera noise dominates the raw pixels:
#: Gaussian pre-filter sigmas (px), finest first.
NOISE_SCALES_PX = (1.0, 2.0)
#: Every curve ``label`` measures for :func:`best_plane`: the RULE_MEASURES raw and at each NOISE_SCALES_PX.
RULE_CURVES = RULE_MEASURES + tuple(at_scale(m, s) for s in NOISE_SCALES_PX for m in RULE_MEASURES)
#: Median detail_skewness below -EMISSION_SKEW: bright detail on a dark ground (fluorescence, darkfield).
EMISSION_SKEW = 1.5
#: A contrast dip this deep (1 - dip / lower flanking maximum) marks a phase object.
PHASE_DIP = 0.5
#: A peak's top: the samples next to the maximum within this fraction of the curve's range below it.
PEAK_TOP_FRAC = 0.02
#: A local peak or dip counts as an extremum of a curve when its prominence is this fraction of the range.
EXTREMUM_PROMINENCE_FRAC = 0.1
#: Gradient energy that varies by less than this fraction of its lowest value over the stack: camera noise
#: dominates the detail (white noise adds a constant 2 sigma^2 to ``brenner``) ...
NOISY_GRADIENT_RANGE = 0.5
#: ... judged only when the stack reaches this many x ``agree_steps`` (half a depth of field) past the pick on
#: one side at least: two depths of field, where defocus has blurred the detail away.
NOISE_CHECK_REACH = 4


@dataclass(frozen=True)
class BestPlane:
    """A stack's best plane by :func:`best_plane`, how it was found, and why it may be wrong (None: corroborated)."""

    z_index: int
    mode: str  # "emission", "absorption" or "phase"
    measure: str  # the curve the plane was read from
    disagreement: str | None


def _dip_depth(contrast: np.ndarray, i: int) -> float:
    """Return the relative depth of the contrast curve at interior index ``i``: 1 - value / lower flanking maximum."""
    flank = min(contrast[:i].max(), contrast[i + 1:].max())
    return float(1.0 - contrast[i] / flank) if flank > 0 else 0.0


def _contrast_dip(contrast: np.ndarray) -> tuple[float, int] | None:
    """Return the deepest interior local minimum of the contrast curve: (relative depth, its index), or None."""
    best = None
    for i in range(1, contrast.size - 1):
        if contrast[i] <= contrast[i - 1] and contrast[i] <= contrast[i + 1]:
            depth = _dip_depth(contrast, i)
            if best is None or depth > best[0]:
                best = (depth, i)
    return best


def prominence(values: np.ndarray, i: int) -> float:
    """Topographic prominence of the interior maximum at ``i``.

    Its height above the higher of the two lowest points separating it from higher ground (or the
    curve's ends).
    """
    v = values[i]
    bases = []
    for side in (values[i::-1], values[i:]):
        higher = np.nonzero(side > v)[0]
        bases.append(side[: higher[0] if higher.size else side.size].min())
    return float(v - max(bases))


def _extrema_z(z: np.ndarray, curve: np.ndarray, peaks: bool = True, dips: bool = True) -> list[int]:
    """Return the z of the curve's interior local peaks and/or dips (prominence >= EXTREMUM_PROMINENCE_FRAC x range)."""
    floor = EXTREMUM_PROMINENCE_FRAC * float(np.ptp(curve))
    out = []
    for v in [curve] * peaks + [-curve] * dips:
        out += [int(z[i]) for i in range(1, v.size - 1)
                if v[i] > v[i - 1] and v[i] >= v[i + 1] and prominence(v, i) >= floor]
    return sorted(out)


def _peak(z: np.ndarray, curve: np.ndarray) -> tuple[int, int, int]:
    """Return (centre z, first z, last z) of the curve's top.

    The top is the run of samples around the maximum within PEAK_TOP_FRAC of the range below it. A top of
    three samples or more is read at its midpoint (rounded to a step, maybe between samples), not at an
    edge that noise decides; a narrower one at its maximum.
    """
    i = int(np.argmax(curve))
    floor = curve[i] - PEAK_TOP_FRAC * float(np.ptp(curve))
    lo, hi = i, i
    while lo > 0 and curve[lo - 1] >= floor:
        lo -= 1
    while hi < curve.size - 1 and curve[hi + 1] >= floor:
        hi += 1
    centre = int(round((z[lo] + z[hi]) / 2)) if hi - lo >= 2 else int(z[i])
    return centre, int(z[lo]), int(z[hi])


def half_max_centre(z: np.ndarray, curve: np.ndarray) -> float:
    """Return the midpoint of the curve's half-maximum crossings on both sides of its maximum (interpolated).

    Half maximum: halfway from the higher of the two flanks' minima to the maximum, so both flanks cross it.
    """
    i = int(np.argmax(curve))
    base = max(curve[: i + 1].min(), curve[i:].min())
    level = base + 0.5 * (curve[i] - base)
    if curve[i] <= level:  # flat
        return float(z[i])
    ends = []
    for step in (-1, 1):
        k = i
        while curve[k + step] >= level:
            k += step
        t = (curve[k] - level) / (curve[k] - curve[k + step])
        ends.append(z[k] + t * (z[k + step] - z[k]))
    return float(sum(ends) / 2)


def best_plane(z_steps: np.ndarray, curves: Mapping[str, np.ndarray], agree_steps: float) -> BestPlane:
    """Find a stack's best-focus z from its :data:`RULE_MEASURES` curves, by the specimen's contrast mode.

    Physics: an emitting specimen (bright detail on a dark ground) is an intensity object, sharpest and
    most contrasted at focus. In transmitted light (bright ground) absorption gives dark detail whose
    contrast and sharpness peak at focus, while a phase object's contrast vanishes at focus and grows
    on both sides, so the contrast curve dips there. Defocus by +d and -d blurs alike, so every measure's
    curve is stationary at focus (a peak or a dip): another measure's extremum backs the pick (a maximum at an
    end of the stack is no stationary point and backs nothing). Hence:

    - emission (median ``detail_skewness`` < -EMISSION_SKEW): the ``vollath_f5`` (contrast) peak;
      backed when the ``brenner`` peak is within ``agree_steps``;
    - phase (a contrast dip at least PHASE_DIP deep): the dip; backed when ``brenner`` peaks or dips
      (prominence >= EXTREMUM_PROMINENCE_FRAC of its range) within ``agree_steps``. A dip nothing backs
      gives way to an interior ``detail_skewness`` peak (prominence >= EXTREMUM_PROMINENCE_FRAC of its
      range, top no wider than 2 x ``agree_steps``), backed by ``brenner`` or not ("contrast mode
      ambiguous": an unbacked dip is the mixed case below, seen from the other side: light refracted out of
      the pupil at a thick worm's edges darkens it like absorption, and the dip moves off focus further
      than the dark-detail peak does);
    - absorption (otherwise): the ``detail_skewness`` peak; backed when the ``brenner`` peak, a ``brenner``
      peak or dip, or a ``vollath_f5`` peak is within ``agree_steps``. A contrast dip alone does not back it
      ("contrast mode ambiguous"): where dark contrast (absorption, or light refracted out of the pupil at
      steep phase gradients) mixes with phase contrast and follows the phase curvature, the intensity gains
      a term odd in defocus; the contrast is then least where the two cancel, off focus, and the dark detail
      peaks on that same dip (a nearly transparent worm: a 37% dip, both 10 steps off). Gradient energy
      weights finer detail, so its extremum moves differently and still backs the pick.
    - noisy (absorption): white camera noise adds a constant to the detail variance that
      ``detail_skewness`` divides by, so where noise dominates the detail the skewness peak is pulled
      toward the planes with the most signal (a phase lobe, 9-21 steps off). Noise adds 2 sigma^2 to
      ``brenner`` at every plane; when ``brenner`` varies by less than NOISY_GRADIENT_RANGE of its
      lowest value over a stack that reaches NOISE_CHECK_REACH x ``agree_steps`` (two depths of field)
      past the pick, the noise dominates; the same rule then reads the curves of the images pre-filtered
      by a Gaussian (``NAME@SIGMA`` in ``curves``) at the finest of NOISE_SCALES_PX whose ``brenner`` passes
      that test. The filter keeps 1 / (4 pi sigma^2) of white noise's variance (1/13 at 1 px, 1/50 at 2 px)
      and the worm's structure, several px wide, but it blurs the finest detail, which is what fixes the
      plane most sharply (a coarser image has a deeper depth of field): the stack stays flagged, backed or
      not, with the coarser reading's own reasons.

    A peak is read at the middle of its top (:func:`_peak`); a top wider than 2 x ``agree_steps`` is a
    disagreement too. A ``detail_skewness`` top that broad holds planes the dark detail cannot tell apart
    (e.g. a binned whole field whose pixels hide the defocus blur near focus), and its middle follows how
    lopsided the curve is: skewness changes sign with the phase contrast, which flips with the sign of
    defocus. Gradient energy is quadratic in the contrast, so to first order its curve is even about focus
    whatever the contrast: the plane is read at the ``brenner`` curve's centre of symmetry, the midpoint of
    its half-maximum crossings (:func:`half_max_centre`, on the flanks, where defocus changes it fast),
    kept inside the ``detail_skewness`` top.
    ``disagreement`` says why the plane is not backed; the caller flags the stack.
    """
    z = np.asarray(z_steps)
    plane, noisy = _best_plane_at(z, *(np.asarray(curves[m], dtype=np.float64) for m in RULE_MEASURES),
                                  agree_steps=agree_steps)
    raw_noisy = noisy
    for sigma_px in NOISE_SCALES_PX if noisy else ():
        names = tuple(at_scale(m, sigma_px) for m in RULE_MEASURES)
        if not all(n in curves for n in names):  # curves measured without the coarser scales
            break
        coarse, noisy = _best_plane_at(z, *(np.asarray(curves[n], dtype=np.float64) for n in names),
                                       agree_steps=agree_steps)
        why = (f"{raw_noisy}; read instead on the images pre-filtered at sigma {sigma_px:g} px, which average the "
               f"noise away but blur the detail that fixes the plane (a deeper depth of field)")
        plane = replace(coarse, measure=at_scale(coarse.measure, sigma_px),
                        disagreement=why + (f"; there: {coarse.disagreement}" if coarse.disagreement else ""))
        if not noisy:
            break
    return plane


def noise_dominated(z_steps: np.ndarray, curves: Mapping[str, np.ndarray], agree_steps: float) -> bool:
    """Return whether camera noise dominates the raw :data:`RULE_MEASURES` curves (best_plane then reads coarser)."""
    z = np.asarray(z_steps)
    return _best_plane_at(z, *(np.asarray(curves[m], dtype=np.float64) for m in RULE_MEASURES),
                          agree_steps=agree_steps)[1] is not None


def _best_plane_at(z: np.ndarray, skew: np.ndarray, contrast: np.ndarray, gradient: np.ndarray,
                   agree_steps: float) -> tuple[BestPlane, str | None]:
    """Return :func:`best_plane`'s reading of one scale's three curves, and why noise dominates them (or None)."""
    i_grad = int(np.argmax(gradient))
    # a maximum at an end of the stack is no stationary point of the curve: it backs nothing
    grad_peak = [int(z[i_grad])] if 0 < i_grad < z.size - 1 else []
    grad_where = f"{int(z[i_grad])}" + ("" if grad_peak else " (an end of the stack)")  # where, for the messages

    def near(other: int) -> bool:
        return abs(other - pick) <= agree_steps

    def broad(lo: int, hi: int, name: str) -> str | None:
        wide = hi - lo > 2 * agree_steps
        return f"broad {name} peak, z={lo}..{hi} within {PEAK_TOP_FRAC:.0%} of its top" if wide else None

    if float(np.median(skew)) < -EMISSION_SKEW:
        pick, lo, hi = _peak(z, contrast)
        why = broad(lo, hi, "contrast") or (None if any(near(e) for e in grad_peak) else
                                            f"emission: contrast peaks at z={pick}, brenner at z={grad_where}")
        return BestPlane(pick, "emission", "vollath_f5", why), None
    grad_ext = _extrema_z(z, gradient)
    dip = _contrast_dip(contrast)
    if dip is not None and dip[0] >= PHASE_DIP:
        pick = int(z[dip[1]])
        noisy = _noisy(z, gradient, pick, agree_steps)  # noise makes dips too: the contrast of the noise varies
        if any(near(e) for e in grad_peak + grad_ext):
            return BestPlane(pick, "phase", "vollath_f5", noisy), noisy
        dark, lo, hi = _peak(z, skew)
        if hi - lo <= 2 * agree_steps and _interior_peak(skew):
            backing = ("backed by brenner (peak" if any(abs(e - dark) <= agree_steps for e in grad_peak + grad_ext)
                       else "which nothing backs either (brenner peak")
            return BestPlane(dark, "absorption", "detail_skewness", noisy or (
                f"contrast mode ambiguous: contrast dips {dip[0]:.0%} at z={pick}, brenner neither peaks nor dips "
                f"there; detail_skewness peaks at z={dark}, {backing} z={grad_where}, extrema z={grad_ext}): "
                f"read there")), noisy
        return BestPlane(pick, "phase", "vollath_f5", noisy or (
            f"phase: contrast dips at z={pick}, brenner neither peaks nor dips there")), noisy
    pick, lo, hi = _peak(z, skew)
    if hi - lo > 2 * agree_steps:  # the dark detail cannot tell these planes apart: gradient energy chooses
        pick = int(np.clip(round(half_max_centre(z, gradient)), lo, hi))
    contrast_peaks = _extrema_z(z, contrast, dips=False)
    backed = any(near(e) for e in grad_peak + grad_ext + contrast_peaks)
    noisy = _noisy(z, gradient, pick, agree_steps)
    why = broad(lo, hi, "detail_skewness") or noisy
    if why is None and not backed:
        why = _unbacked(z, contrast, pick, grad_where, grad_ext, agree_steps)
    return BestPlane(pick, "absorption", "detail_skewness", why), noisy


def _interior_peak(curve: np.ndarray) -> bool:
    """Return whether the curve's maximum is an interior peak (prominence >= EXTREMUM_PROMINENCE_FRAC x range)."""
    i = int(np.argmax(curve))
    return 0 < i < curve.size - 1 and prominence(curve, i) >= EXTREMUM_PROMINENCE_FRAC * float(np.ptp(curve))


def _noisy(z: np.ndarray, gradient: np.ndarray, pick: int, agree_steps: float) -> str | None:
    """Return why a pick is not trusted when camera noise dominates the detail, else None."""
    if max(pick - z[0], z[-1] - pick) < NOISE_CHECK_REACH * agree_steps:  # too short to blur the detail away
        return None
    floor = float(gradient.min())
    spread = float(np.ptp(gradient)) / floor if floor > 0 else np.inf
    if spread >= NOISY_GRADIENT_RANGE:
        return None
    return (f"noisy: brenner varies by only {spread:.0%} of its floor over the stack, so camera noise dominates the "
            f"detail: it pulls the detail_skewness peak toward the planes with the most signal and makes contrast "
            f"dips of its own (picked z={pick})")


def _unbacked(z: np.ndarray, contrast: np.ndarray, pick: int, grad_where: str, grad_ext: list[int],
              agree_steps: float) -> str:
    """Return why an absorption pick no other extremum backs is flagged (mixed contrast when it sits on a dip)."""
    dips = [int(np.searchsorted(z, e)) for e in _extrema_z(z, contrast, peaks=False) if abs(e - pick) <= agree_steps]
    if dips:
        i = max(dips, key=lambda k: _dip_depth(contrast, k))
        return (f"contrast mode ambiguous: detail_skewness peaks at z={pick} on a contrast dip at z={int(z[i])} "
                f"{_dip_depth(contrast, i):.0%} deep (a phase object: >= {PHASE_DIP:.0%}), and brenner neither "
                f"peaks nor dips within {agree_steps:g} steps (peak z={grad_where}, extrema z={grad_ext}): where "
                f"absorption and phase contrast mix, the dip and the dark-detail peak move off focus together")
    contrast_peaks = _extrema_z(z, contrast, dips=False)
    return (f"absorption: detail_skewness peaks at z={pick}, brenner at z={grad_where}, and no contrast peak or "
            f"brenner peak or dip lies within {agree_steps:g} steps (contrast peaks: z={contrast_peaks}, "
            f"brenner: z={grad_ext})")
