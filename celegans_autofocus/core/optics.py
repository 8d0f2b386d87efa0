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

"""Physically based brightfield z-stack simulator: worm phantoms on agar, defocus, camera.

Sign convention (defined here once; every other module follows it):
``offset_steps = best_index - z_index`` are the motor steps that bring the specimen into focus.
A frame at ``offset_steps`` shows the specimen's transmitted field propagated by
``dz_um = -offset_steps * step_um`` along the light (``dz_um > 0``: the camera is focused on a
plane downstream of the specimen). A worm (index above the medium) is a weak positive lens:
for ``dz_um > 0`` its body turns bright inside dark edges, for ``dz_um < 0`` dark inside bright
edges. That asymmetry is what makes the sign of the offset learnable from one image.

Model (scalar, thin object, Fresnel regime):
- Specimen: complex transmittance ``exp(-absorb + i*phase)`` of one plane. Worms are tapered
  tubes along smooth random centre-lines (projected thickness of a swept ball); phase
  ``2*pi*(n_worm - n_medium)*thickness/lambda``; weak absorption by the body, a thin cuticle
  shell, gut granules and eggs. Background: agar surface undulations, a bacterial lawn
  (patch with a thicker rim and clumps), debris particles and scratches (air-filled grooves).
- Defocus: Fresnel transfer function ``exp(-i*pi*lambda*dz*(fx^2 + fy^2))`` on the cached
  field spectrum, pupil cut-off at ``na`` softened over the condenser aperture. Partial
  coherence (condenser NA): by the Fourier shift theorem a source point tilted by ``q`` shifts
  the defocused intensity by ``lambda*dz*q``, so the source disc blurs the coherent intensity
  by a Gaussian of sigma ``|dz|*condenser_na/2`` (pupil-clipping differences between source
  points are approximated by the soft pupil edge). The lens's own blur (``blur_sigma_px``, an
  incoherent Gaussian PSF) adds to that sigma in quadrature, on the same padded grid.
- Camera: object-space pixels of ``um_per_px``, quadratic vignetting, Poisson-Gaussian noise
  (shot noise in its Gaussian limit, thousands of electrons) and 8-bit output.

The scene is vector data in full-frame pixels, rasterized over any window at any sampling, so a
small ``out_shape`` (the fast path) is the same physics at lower resolution. A window whose field
grid fits ``max_native_grid_px`` is computed on the camera's native grid (an integer subdivision
of it when ``um_per_px`` is coarser than the band NA + condenser NA needs) and area-averaged to
``out_shape``: a crop rendered small is the native crop binned. A larger view binned by a whole
factor that the capped grid below cannot resolve (a 648x486 full field) is rasterized natively once
(within ``max_band_raster_px``) and propagated per frame on the coarsest grid that holds the
band: its crops match a native render binned alike. Other views use a grid at most
``max_oversample`` times finer than the output. Phase gradients that
the grid cannot represent (light deflected beyond its Nyquist angle) are treated as lost. Content
around the window is rasterized into the FFT padding, so there is no wrap-around within
``max_offset_steps``. Camera extras (blur, motion blur, sharpening, gamma, JPEG) are off by default;
``core.randomize`` draws calibrated variants of all of it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from fractions import Fraction

import cv2
import numpy as np

from .sensor import FULL_FRAME_WH_PX, STEP_UM, UM_PER_PX

#: Stacks render offsets up to this many steps without wrap-around unless told otherwise.
DEFAULT_MAX_OFFSET_STEPS = 300.0
MIN_OUT_PX = 4  # the smallest side of a rendered image
ASPECT_TOLERANCE = 0.02  # a rendered image's aspect may differ from its window's by this (square output pixels)


@dataclass(frozen=True)
class OpticsConfig:
    """Microscope, specimen and camera constants (lengths in micrometres)."""

    step_um: float = STEP_UM
    um_per_px: float = UM_PER_PX
    wavelength_um: float = 0.55
    na: float = 0.08
    condenser_na: float = 0.03
    frame_width_px: int = FULL_FRAME_WH_PX[0]
    frame_height_px: int = FULL_FRAME_WH_PX[1]
    n_medium: float = 1.33
    n_worm: float = 1.38
    worm_length_um: tuple[float, float] = (850.0, 1150.0)
    worm_width_um: tuple[float, float] = (50.0, 80.0)
    full_well_e: float = 10000.0
    read_noise_e: float = 3.0
    vignetting: float = 0.25
    noise: bool = True
    max_oversample: int = 2
    #: field grid budget (px incl. padding) for rendering a window on the native grid (or an integer
    #: subdivision of it when um_per_px is coarser than the field's band needs); larger grids use
    #: ``max_oversample`` times the output's sampling instead (the live full-field view).
    max_native_grid_px: int = 2_500_000
    #: budget (px) for rasterizing a larger whole-binned view (the live full field) once on the native grid: its
    #: spectrum, band-limited by the pupil, is then propagated per frame on the coarsest grid that holds the band.
    max_band_raster_px: int = 8_000_000
    # Specimen appearance (defaults: the look of the bundled model's first three stages, LOOKS["default"];
    # LOOKS["real_adult"] is fitted to real in-focus adults; core.randomize varies them).
    body_absorb_per_um: float = 0.0015  # amplitude absorption of the body per um of chord
    cuticle_absorb_per_um: float = 0.05  # extra absorption of the 1 um cuticle shell
    inclusion_scale: float = 1.0  # multiplies index contrast and absorption of gut granules, bulbs, eggs in utero
    lawn_scale: float = 1.0  # multiplies the bacterial lawn's thickness
    agar_scale: float = 1.0  # multiplies the agar surface undulation
    #: nepers: up to this std (drawn uniformly per scene) of an absorbing mottle of lawn and agar (20-60 um) that
    #: stays visible in focus, where the phase undulation vanishes (real in-focus backgrounds are mottled:
    #: benchmarks/background_texture.md); it also darkens the background by ~2.5x its std
    background_absorb_std: float = 0.0
    particle_density_scale: float = 1.0
    eggs_per_mm2: float = 0.0  # laid eggs on the agar
    tracks: int = 0  # crawling tracks (shallow sinusoidal grooves) per scene
    brightness: tuple[float, float] = (0.55, 0.8)  # background level range, fraction of 8-bit full scale
    # Camera (defaults: off).
    gamma: float = 1.0  # output = 255 * (linear / 255) ** (1 / gamma)
    jpeg_quality: int = 0  # 0 = none, else the frame is JPEG-compressed at this quality
    motion_blur_px: float = 0.0  # linear blur along a random direction, in camera px (um_per_px)
    blur_sigma_px: float = 0.0  # Gaussian blur (lens aberrations, soft camera optics), in camera px (um_per_px)
    sharpen: float = 0.0  # the camera's unsharp mask (after noise): out = x + sharpen * (x - blur_1px(x))

    @property
    def depth_of_field_um(self) -> float:
        """Axial range that looks sharp: lambda / NA^2."""
        return self.wavelength_um / self.na**2

    @property
    def depth_of_field_steps(self) -> float:
        return self.depth_of_field_um / self.step_um

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


#: Named looks of specimen and camera: OpticsConfig field overrides. ``real_adult`` is fitted to real in-focus
#: adults (benchmarks/calibrate_optics.md: a soft lens, a lighter rim, no halo, fewer particles, less noise).
LOOKS: dict[str, dict] = {
    "default": {},
    "real_adult": {"n_worm": 1.375, "condenser_na": 0.05, "body_absorb_per_um": 0.0013, "inclusion_scale": 0.9,
                   "particle_density_scale": 0.3, "blur_sigma_px": 3.5, "full_well_e": 38000.0},
}
#: ``real_adult`` with the in-focus background mottle of real plates (benchmarks/background_texture.md).
LOOKS["real_adult_mottled"] = {**LOOKS["real_adult"], "background_absorb_std": 0.016}
#: The look the simulator shows unless told otherwise (stack player, `sim`, `bench`, `synth`): the one closest to
#: real frames, which the bundled model's last two stages learnt (models/MODEL_CARD.md).
SIMULATOR_LOOK = "real_adult_mottled"


def look_config(name: str) -> OpticsConfig:
    """Return ``OpticsConfig()`` with the named look of LOOKS."""
    if name not in LOOKS:
        raise ValueError(f"unknown look {name!r}; known: {', '.join(LOOKS)}")
    return replace(OpticsConfig(), **LOOKS[name])


@dataclass(frozen=True)
class Balls:
    """Spheres of index contrast ``delta_n`` and amplitude absorption ``absorb_per_um``."""

    xy_px: np.ndarray  # (K, 2) full-frame px
    radius_um: np.ndarray  # (K,)
    delta_n: np.ndarray  # (K,)
    absorb_per_um: np.ndarray  # (K,)


@dataclass(frozen=True)
class Worm:
    """A tapered tube along ``centerline_px`` (head first) with its inner structures."""

    centerline_px: np.ndarray  # (N, 2) x, y in full-frame px, sampled every ~2 um
    radius_um: np.ndarray  # (N,) tube radius along the centre-line
    inclusions: Balls  # gut granules, pharynx bulbs, eggs (relative to the worm body)
    um_per_px: float

    @property
    def centroid_px(self) -> tuple[float, float]:
        """Projected-area-weighted centre (x, y) in full-frame px."""
        w = self.radius_um / self.radius_um.sum()
        x, y = (self.centerline_px * w[:, None]).sum(axis=0)
        return float(x), float(y)

    @property
    def bbox_px(self) -> tuple[int, int, int, int]:
        """(x0, y0, w, h) in full-frame px enclosing the whole body (may extend off the frame)."""
        r_px = self.radius_um[:, None] / self.um_per_px
        lo = np.floor((self.centerline_px - r_px).min(axis=0)).astype(int)
        hi = np.ceil((self.centerline_px + r_px).max(axis=0)).astype(int)
        return int(lo[0]), int(lo[1]), int(hi[0] - lo[0]), int(hi[1] - lo[1])


@dataclass(frozen=True)
class Texture:
    """A field sampled on a coarse grid: value k covers the full-frame px ``origin_px + k*cell_px``."""

    values: np.ndarray  # (rows, cols) float32
    origin_px: tuple[float, float]  # (x, y) of values[0, 0]
    cell_px: float


@dataclass(frozen=True)
class Scene:
    """Vector description of one field of view (full-frame pixels) in the specimen plane."""

    worms: tuple[Worm, ...]
    particles: Balls
    scratches: np.ndarray  # (S, 6): x0, y0, x1, y1 px, half width um, depth um
    background_phase: Texture  # rad: agar undulation + lawn
    background_absorb: Texture  # nepers of amplitude: lawn
    brightness: float  # background level as a fraction of 8-bit full scale
    um_per_px: float


_CENTERLINE_SPACING_UM = 2.0
_ADULT_MIN_LENGTH_UM = 850.0  # the default (adult) worm length range starts here ...
_ADULT_MIN_RADIUS_UM = 22.5  # ... and its half width: smaller worms are larvae (fewer granules, no eggs)
_MARGIN_UM = 600.0  # scene content beyond the frame edge, for the FFT padding
#: the per-frame grid of a band-limited view resolves the field's band with this margin: intensity is formed
#: point-wise on that grid, and at exactly the band's Nyquist its aliases cost up to 0.047 RMS after binning
#: against the native render (0.040 with this margin; benchmarks/fast_path_fidelity.md)
_BAND_NYQUIST_MARGIN = 1.05
#: ... and has at most this many grid px per output px: a much coarser view (a full frame at the model's input
#: size) would spend a large FFT on detail that binning removes; it keeps the old grid.
_BAND_MAX_OVERSAMPLE = 4.0
#: the source and lens blur is applied after binning when the grid bins to the output by a ratio p/q with q at most
_MAX_BIN_DENOMINATOR = 8
#: ... and its sigma is at least this many output px: narrower, blur-then-bin and bin-then-blur differ by up to
#: 0.06 RMS after preprocessing, wider by <= 0.025 (benchmarks/fast_path_fidelity.md)
_BLUR_AFTER_BIN_MIN_PX = 1.0
_RECENT_INTENSITIES = 4  # StackRenderer keeps this many quantised offsets' intensities
_N_AGAR_AIR = 1.0  # a scratch is a groove of air in agar (n_medium)


# ----------------------------------------------------------------------------- scene

def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_cells: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered white noise (drawn coarser when very smooth)."""
    factor = max(1, int(sigma_cells / 3))
    coarse = (shape[0] // factor + 2, shape[1] // factor + 2)
    field = cv2.GaussianBlur(rng.standard_normal(coarse).astype(np.float32), (0, 0), sigma_cells / factor)
    if factor > 1:
        field = cv2.resize(field, (coarse[1] * factor, coarse[0] * factor), interpolation=cv2.INTER_CUBIC)
    field = field[: shape[0], : shape[1]]
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _worm(rng: np.random.Generator, config: OpticsConfig, center_px: np.ndarray) -> Worm:
    length_um = rng.uniform(*config.worm_length_um)
    r_max = rng.uniform(*config.worm_width_um) / 2
    n = int(length_um / _CENTERLINE_SPACING_UM) + 1
    s = np.linspace(0.0, 1.0, n)
    # Sinusoidal crawling posture plus a slow random bend.
    wavelength = rng.uniform(0.55, 0.9)
    amp_rad = rng.uniform(0.2, 0.8)
    angle = (rng.uniform(0, 2 * np.pi) + amp_rad * np.sin(2 * np.pi * s / wavelength + rng.uniform(0, 2 * np.pi))
             + rng.uniform(-1.2, 1.2) * (s - 0.5) + rng.uniform(-0.8, 0.8) * (s - 0.5) ** 2)
    step_px = length_um / (n - 1) / config.um_per_px
    xy = np.cumsum(np.stack([np.cos(angle), np.sin(angle)], axis=1) * step_px, axis=0)
    xy += center_px - xy.mean(axis=0)
    # Blunt rounded head, long tapering tail.
    head = np.sqrt(np.clip(1 - (1 - np.clip(s / 0.1, 0, 1)) ** 2, 0, 1))
    tail = np.clip((1 - s) / 0.3, 0, 1) ** 0.9
    radius = np.maximum(r_max * head * tail, 1.0)

    def along(m: int, s_lo: float, s_hi: float, lateral: float) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(int(s_lo * (n - 1)), int(s_hi * (n - 1)), m)
        tangent = np.gradient(xy, axis=0)[idx]
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        off_px = rng.uniform(-lateral, lateral, m) * radius[idx] / config.um_per_px
        return xy[idx] + normal * off_px[:, None], radius[idx]

    # Gut granules as dense per area as in an adult (smaller larvae have fewer); eggs in utero only in adults.
    area_fraction = min(1.0, length_um * r_max / (_ADULT_MIN_LENGTH_UM * _ADULT_MIN_RADIUS_UM))
    g_xy, _ = along(int(rng.integers(250, 600) * area_fraction), 0.18, 0.92, 0.6)
    g_r = rng.uniform(1.2, 3.5, len(g_xy))
    b_xy, b_r = along(2, 0.05, 0.13, 0.0)
    e_xy, e_r = along(int(rng.integers(0, 12)) if r_max >= _ADULT_MIN_RADIUS_UM else 0, 0.4, 0.62, 0.3)
    inclusions = Balls(
        xy_px=np.concatenate([g_xy, b_xy, e_xy]),
        radius_um=np.concatenate([g_r, 0.45 * b_r, np.full(len(e_xy), rng.uniform(12, 18))]),
        delta_n=np.concatenate([rng.uniform(0.02, 0.06, len(g_xy)), np.full(len(b_xy), 0.02),
                                np.full(len(e_xy), 0.015)]),
        absorb_per_um=np.concatenate([rng.uniform(0.02, 0.12, len(g_xy)), np.full(len(b_xy), 0.004),
                                      np.full(len(e_xy), 0.006)]),
    )
    return Worm(centerline_px=xy, radius_um=radius, inclusions=inclusions, um_per_px=config.um_per_px)


def make_scene(rng: np.random.Generator, config: OpticsConfig = OpticsConfig(), n_worms: int = 2) -> Scene:
    """Draw a random plate region: ``n_worms`` worms inside the frame, lawn, debris, scratches."""
    if n_worms < 0:
        raise ValueError(f"n_worms must be >= 0, got {n_worms}")
    w_px, h_px = config.frame_width_px, config.frame_height_px
    margin_px = _MARGIN_UM / config.um_per_px
    worms = []
    for _ in range(n_worms):
        for _attempt in range(20):
            worm = _worm(rng, config, rng.uniform([0.2 * w_px, 0.2 * h_px], [0.8 * w_px, 0.8 * h_px]))
            x0, y0, bw, bh = worm.bbox_px
            if x0 >= 0 and y0 >= 0 and x0 + bw <= w_px and y0 + bh <= h_px:
                break
        worms.append(worm)

    area_px = (w_px + 2 * margin_px) * (h_px + 2 * margin_px)
    n_part = int(rng.poisson(area_px * rng.uniform(20, 70) / 1e6 * config.particle_density_scale))
    dark = rng.random(n_part) < 0.4
    particles = Balls(
        xy_px=rng.uniform([-margin_px, -margin_px], [w_px + margin_px, h_px + margin_px], (n_part, 2)),
        radius_um=np.exp(rng.uniform(np.log(1.5), np.log(12.0), n_part)),
        delta_n=np.where(dark, rng.uniform(0.05, 0.2, n_part), rng.uniform(0.01, 0.08, n_part)),
        absorb_per_um=np.where(dark, rng.uniform(0.05, 0.4, n_part), rng.uniform(0.0, 0.01, n_part)),
    )

    n_scratch = int(rng.integers(0, 4))
    mid = rng.uniform([0, 0], [w_px, h_px], (n_scratch, 2))
    theta = rng.uniform(0, np.pi, n_scratch)
    half_len = rng.uniform(300, 2000, n_scratch) / config.um_per_px
    d = np.stack([np.cos(theta), np.sin(theta)], axis=1) * half_len[:, None]
    scratches = np.concatenate([mid - d, mid + d, rng.uniform(2, 8, (n_scratch, 1)),
                                rng.uniform(0.2, 1.5, (n_scratch, 1))], axis=1).reshape(n_scratch, 6)

    # Background textures on a 4 um grid covering the frame plus margin.
    cell_um = 4.0
    cell_px = cell_um / config.um_per_px
    origin = (-margin_px, -margin_px)
    rows = int(np.ceil((h_px + 2 * margin_px) / cell_px)) + 1
    cols = int(np.ceil((w_px + 2 * margin_px) / cell_px)) + 1
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    xx = (origin[0] + xx * cell_px) * config.um_per_px  # um
    yy = (origin[1] + yy * cell_px) * config.um_per_px
    agar_rad = config.agar_scale * (0.8 * _smooth_noise(rng, (rows, cols), 200 / cell_um)
                                    + 0.15 * _smooth_noise(rng, (rows, cols), 25 / cell_um))
    # Lawn: a big disc (radius 3-8 mm) whose edge may cross the frame; thicker rim, clumpy.
    frame_c = np.array([w_px, h_px]) * config.um_per_px / 2
    lawn_r = rng.uniform(3000, 8000)
    lawn_c = frame_c + rng.normal(0, 1, 2) / np.sqrt(2) * rng.uniform(0.3, 1.2) * lawn_r
    dist_edge = lawn_r - np.hypot(xx - lawn_c[0], yy - lawn_c[1])  # um, > 0 inside
    inside = 1 / (1 + np.exp(-dist_edge / 15))
    rim = 2.5 * np.exp(-np.maximum(dist_edge, 0) / 80) * inside
    clumps = np.clip(_smooth_noise(rng, (rows, cols), 6 / cell_um) * 0.6
                     + _smooth_noise(rng, (rows, cols), 40 / cell_um) * 0.4, -2, 3)
    lawn_um = np.clip(inside * rng.uniform(0.8, 2.5) * (1 + 0.35 * clumps) + rim, 0, None).astype(np.float32)
    lawn_um *= config.lawn_scale
    brightness = float(rng.uniform(*config.brightness))
    # Optional extras draw from rng only when enabled, so the default scenes stay as they were.
    groove_um = np.zeros_like(lawn_um)
    if config.tracks > 0:
        lawn_um, groove_um = _tracks(rng, config, lawn_um, cell_um, (rows, cols))
    if config.eggs_per_mm2 > 0:
        particles = _with_eggs(rng, config, particles, area_px * (config.um_per_px / 1000) ** 2, margin_px)
    absorb = 0.004 * lawn_um
    if config.background_absorb_std > 0:
        # two scales, unit std in all (0.7^2 + 0.7^2 ~ 1); shifted by 2.5 std and clipped at 0: it absorbs, never
        # amplifies
        mottle = (0.7 * _smooth_noise(rng, (rows, cols), 20 / cell_um)
                  + 0.7 * _smooth_noise(rng, (rows, cols), 60 / cell_um))
        std = config.background_absorb_std * float(rng.uniform(0, 1))
        absorb = absorb + std * np.clip(mottle + 2.5, 0, None)
    lawn_dn = 0.05
    phase = (agar_rad + 2 * np.pi * lawn_dn * lawn_um / config.wavelength_um
             - 2 * np.pi * (config.n_medium - _N_AGAR_AIR) * groove_um / config.wavelength_um)
    return Scene(
        worms=tuple(worms), particles=particles, scratches=scratches,
        background_phase=Texture(phase.astype(np.float32), origin, cell_px),
        background_absorb=Texture(absorb.astype(np.float32), origin, cell_px),
        brightness=brightness, um_per_px=config.um_per_px,
    )


def _tracks(rng: np.random.Generator, config: OpticsConfig, lawn_um: np.ndarray, cell_um: float,
            shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Crawling tracks: sinusoidal furrows (worm-wide) that thin the lawn and groove the agar surface."""
    mask = np.zeros(shape, np.float32)
    for _ in range(config.tracks):
        length_um = rng.uniform(800, 4000)
        s = np.linspace(0, length_um, 200)
        wavelength_um = rng.uniform(400, 900)
        bend = rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * s / wavelength_um + rng.uniform(0, 2 * np.pi))
        angle = rng.uniform(0, 2 * np.pi) + bend + rng.uniform(-0.5, 0.5) * s / length_um
        xy = np.cumsum(np.stack([np.cos(angle), np.sin(angle)], 1) * (s[1] - s[0]), 0) / cell_um
        xy += rng.uniform([0, 0], [shape[1], shape[0]]) - xy.mean(0)
        width_cells = max(1, int(round(rng.uniform(*config.worm_width_um) / cell_um)))
        cv2.polylines(mask, [np.round(xy).astype(np.int32)], False, float(rng.uniform(0.3, 1.0)), width_cells)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.0)
    return lawn_um * (1 - 0.7 * mask), mask * float(rng.uniform(0.02, 0.15))


def _with_eggs(rng: np.random.Generator, config: OpticsConfig, particles: Balls, area_mm2: float,
               margin_px: float) -> Balls:
    """Laid eggs (~50 x 30 um shells, drawn as balls of the same volume) added to the particles.

    An egg's index contrast (0.02-0.04) makes a smooth ball a strong lens (focal length n R / 2 dn, a few
    hundred um) whose caustics outshine everything away from focus. A real egg is no smooth ball: the
    embryo's yolk granules and cells scatter the light out of a low-NA pupil within ~10-15 um, so on a
    plate it is a dark oval. Its amplitude loss (0.03-0.06 per um: 2-15 % of the light through the
    centre) stands for that scattering, and leaves the lens only the ballistic rest.
    """
    n = int(rng.poisson(config.eggs_per_mm2 * area_mm2))
    xy = rng.uniform([-margin_px, -margin_px], [config.frame_width_px + margin_px,
                                                config.frame_height_px + margin_px], (n, 2))
    return Balls(np.concatenate([particles.xy_px, xy]), np.concatenate([particles.radius_um, rng.uniform(16, 20, n)]),
                 np.concatenate([particles.delta_n, rng.uniform(0.02, 0.04, n)]),
                 np.concatenate([particles.absorb_per_um, rng.uniform(0.03, 0.06, n)]))


# ------------------------------------------------------------------------ rasterizing

@dataclass(frozen=True)
class _Grid:
    """Pixel (i, j) of a grid has its centre at full-frame px (x0 + (j+.5)*s, y0 + (i+.5)*s)."""

    x0_px: float
    y0_px: float
    scale_px: float  # full-frame px per grid px
    shape: tuple[int, int]

    def to_grid(self, xy_px: np.ndarray) -> np.ndarray:
        return (xy_px - [self.x0_px, self.y0_px]) / self.scale_px - 0.5


def _splat_chords(out: np.ndarray, xy_g: np.ndarray, r_g: np.ndarray, weight: np.ndarray,
                  dx_um: float, combine: str) -> None:
    """Add (or max) ``weight * chord_um`` of balls at grid coords ``xy_g`` with radii ``r_g`` (grid px).

    Balls under ~1.5 px are splatted as Gaussians with the same volume, so they never vanish.
    """
    h, w = out.shape
    for (cx, cy), r, wt in zip(xy_g, r_g, weight):
        ext = max(r, 1.5) + 2
        i0, i1 = max(int(cy - ext), 0), min(int(cy + ext) + 2, h)
        j0, j1 = max(int(cx - ext), 0), min(int(cx + ext) + 2, w)
        if i0 >= i1 or j0 >= j1:
            continue
        dy2 = (np.arange(i0, i1, dtype=np.float32) - cy) ** 2
        dx2 = (np.arange(j0, j1, dtype=np.float32) - cx) ** 2
        d2 = dy2[:, None] + dx2[None, :]
        if r >= 1.5:
            chord = 2 * np.sqrt(np.maximum(r * r - d2, 0)) * dx_um
        else:  # volume (4/3) pi r^3 spread as a Gaussian, in um
            sig2 = max(r * r / 4, 0.36)
            chord = (4 / 3 * np.pi * r**3) / (2 * np.pi * sig2) * np.exp(-d2 / (2 * sig2)) * dx_um
        region = out[i0:i1, j0:j1]
        if combine == "max":
            np.maximum(region, wt * chord, out=region)
        else:
            region += wt * chord


def _sample_texture(tex: Texture, grid: _Grid) -> np.ndarray:
    """Cubic interpolation of ``tex`` at the grid's pixel centres, low-passed when the grid is coarser."""
    step = grid.scale_px / tex.cell_px  # texture cells per grid px
    values = tex.values
    if step > 1:
        values = cv2.GaussianBlur(values, (0, 0), 0.5 * math.sqrt(step * step - 1))
    u0 = (grid.x0_px + 0.5 * grid.scale_px - tex.origin_px[0]) / tex.cell_px
    v0 = (grid.y0_px + 0.5 * grid.scale_px - tex.origin_px[1]) / tex.cell_px
    m = np.array([[step, 0, u0], [0, step, v0]], dtype=np.float64)
    h, w = grid.shape
    return cv2.warpAffine(values, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def _scratch_depth(scene: Scene, grid: _Grid, dx_um: float) -> np.ndarray:
    depth = np.zeros(grid.shape, np.float32)
    h, w = grid.shape
    for x0, y0, x1, y1, hw_um, depth_um in scene.scratches:
        (a, b) = grid.to_grid(np.array([[x0, y0], [x1, y1]]))
        hw = hw_um / dx_um + 1
        j0, j1 = max(int(min(a[0], b[0]) - hw), 0), min(int(max(a[0], b[0]) + hw) + 2, w)
        i0, i1 = max(int(min(a[1], b[1]) - hw), 0), min(int(max(a[1], b[1]) + hw) + 2, h)
        if i0 >= i1 or j0 >= j1:
            continue
        py, px = np.mgrid[i0:i1, j0:j1].astype(np.float32)
        d = b - a
        t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
        dist_um = np.hypot(px - a[0] - t * d[0], py - a[1] - t * d[1]) * dx_um
        np.maximum(depth[i0:i1, j0:j1], depth_um * np.clip(1 - (dist_um / hw_um) ** 2, 0, None),
                   out=depth[i0:i1, j0:j1])
    return depth


def _rasterize(scene: Scene, config: OpticsConfig, grid: _Grid) -> np.ndarray:
    """Complex transmittance (complex64) of the specimen on ``grid``."""
    dx_um = grid.scale_px * config.um_per_px
    k_rad_per_um = 2 * np.pi / config.wavelength_um
    phase = _sample_texture(scene.background_phase, grid)
    absorb = _sample_texture(scene.background_absorb, grid)
    phase -= (k_rad_per_um * (config.n_medium - _N_AGAR_AIR)) * _scratch_depth(scene, grid, dx_um)

    p = scene.particles
    _splat_chords(phase, grid.to_grid(p.xy_px), p.radius_um / dx_um, k_rad_per_um * p.delta_n, dx_um, "add")
    _splat_chords(absorb, grid.to_grid(p.xy_px), p.radius_um / dx_um, p.absorb_per_um, dx_um, "add")

    dn_worm = config.n_worm - config.n_medium
    cuticle_um = 1.0
    for worm in scene.worms:
        x0, y0, bw, bh = worm.bbox_px
        j0 = max(int((x0 - grid.x0_px) / grid.scale_px) - 2, 0)
        i0 = max(int((y0 - grid.y0_px) / grid.scale_px) - 2, 0)
        j1 = min(int((x0 + bw - grid.x0_px) / grid.scale_px) + 3, grid.shape[1])
        i1 = min(int((y0 + bh - grid.y0_px) / grid.scale_px) + 3, grid.shape[0])
        if i0 >= i1 or j0 >= j1:
            continue
        sub = _Grid(grid.x0_px + j0 * grid.scale_px, grid.y0_px + i0 * grid.scale_px, grid.scale_px,
                    (i1 - i0, j1 - j0))
        xy_g = sub.to_grid(worm.centerline_px)
        body = np.zeros(sub.shape, np.float32)
        core = np.zeros(sub.shape, np.float32)
        ones = np.ones(len(xy_g))
        _splat_chords(body, xy_g, worm.radius_um / dx_um, ones, dx_um, "max")
        _splat_chords(core, xy_g, np.maximum(worm.radius_um - cuticle_um, 0) / dx_um, ones, dx_um, "max")
        inc = worm.inclusions
        inc_phase = np.zeros(sub.shape, np.float32)
        inc_absorb = np.zeros(sub.shape, np.float32)
        _splat_chords(inc_phase, sub.to_grid(inc.xy_px), inc.radius_um / dx_um, k_rad_per_um * inc.delta_n, dx_um,
                      "add")
        _splat_chords(inc_absorb, sub.to_grid(inc.xy_px), inc.radius_um / dx_um, inc.absorb_per_um, dx_um, "add")
        inside = body > 0
        phase[i0:i1, j0:j1] += k_rad_per_um * dn_worm * body + config.inclusion_scale * inc_phase * inside
        absorb[i0:i1, j0:j1] += (config.body_absorb_per_um * body + config.cuticle_absorb_per_um * (body - core)
                                 + config.inclusion_scale * inc_absorb * inside)

    # Light deflected past the grid's Nyquist angle would alias; it leaves the pupil (lost).
    gy, gx = np.gradient(phase)
    f_local = np.sqrt(gx * gx + gy * gy) / (2 * np.pi * dx_um)  # cycles/um
    f_nyquist = 0.5 / dx_um
    amplitude = np.exp(-absorb) / (1 + (f_local / (0.9 * f_nyquist)) ** 8)
    field = np.empty(grid.shape, np.complex64)
    field.real = amplitude * np.cos(phase)
    field.imag = amplitude * np.sin(phase)
    return field


# -------------------------------------------------------------------------- rendering

def _check_window(config: OpticsConfig, window_px, out_shape) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    if window_px is None:
        window_px = (0, 0, config.frame_width_px, config.frame_height_px)
    x0, y0, w, h = (int(v) for v in window_px)
    if w <= 0 or h <= 0:
        raise ValueError(f"window_px {tuple(window_px)} must have positive width and height")
    if out_shape is None:
        out_shape = (h, w)
    oh, ow = (int(v) for v in out_shape)
    if oh < MIN_OUT_PX or ow < MIN_OUT_PX:
        raise ValueError(f"out_shape {tuple(out_shape)} must be at least {MIN_OUT_PX}x{MIN_OUT_PX}")
    if abs((w / ow) / (h / oh) - 1) > ASPECT_TOLERANCE:
        raise ValueError(f"out_shape {(oh, ow)} must keep the aspect of window_px {(x0, y0, w, h)} "
                         f"(square output pixels)")
    return (x0, y0, w, h), (oh, ow)


class StackRenderer:
    """Renders one scene at any offset; the in-focus field spectrum is computed once.

    Per frame: one multiply by the separable Fresnel transfer function, one inverse FFT, the
    source and lens blur, binning to ``out_shape`` and the camera model. Offsets beyond
    ``max_offset_steps`` still render, with some light wrapping around from the far edge.
    With ``offset_quantum_steps`` > 0 the optics are rendered at the offset rounded to it and the last
    few kept (a live view whose lens holds while the plane creeps re-renders only the noise).
    """

    def __init__(self, scene: Scene, config: OpticsConfig, out_shape: tuple[int, int] | None = None,
                 window_px: tuple[int, int, int, int] | None = None, seed: int | None = None,
                 max_offset_steps: float = DEFAULT_MAX_OFFSET_STEPS, rng: np.random.Generator | None = None,
                 offset_quantum_steps: float = 0.0):
        self.config = config
        self.offset_quantum_steps = float(offset_quantum_steps)
        self._recent: dict[float, np.ndarray] = {}  # intensities by rounded offset (offset_quantum_steps > 0)
        self.window_px, self.out_shape = _check_window(config, window_px, out_shape)
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        x0, y0, w, _ = self.window_px
        oh, ow = self.out_shape
        out_scale_px = w / ow  # full-frame px per output px
        dx_out_um = out_scale_px * config.um_per_px
        na_outer = config.na + config.condenser_na
        dx_needed_um = config.wavelength_um / (2 * na_outer)  # Nyquist of the field's band
        dz_max_um = abs(max_offset_steps) * config.step_um
        lens_um = config.blur_sigma_px * config.um_per_px
        pad_um = dz_max_um * (config.na + 2.5 * config.condenser_na) + 3 * lens_um + 10.0
        # Native grid (or an integer subdivision of it) when it fits the budget: a binned window then is
        # the native render binned, whatever out_shape; else max_oversample x the output's sampling.
        sub = max(1, math.ceil(config.um_per_px / dx_needed_um - 1e-9))
        native_pad = sub * math.ceil(pad_um / config.um_per_px)
        native_px = (self.window_px[3] * sub + 2 * native_pad) * (w * sub + 2 * native_pad)
        native = out_scale_px > 1 and native_px <= config.max_native_grid_px
        oversample = int(min(max(1, math.ceil(dx_out_um / dx_needed_um - 1e-9)), config.max_oversample))
        coarse = dx_out_um / oversample > dx_needed_um  # the capped grid cannot hold the band
        band = _band_layout(self.window_px, self.out_shape, sub, dx_needed_um, pad_um, config) \
            if coarse and not native else None
        if native:
            scale_px = 1.0 / sub
            pad = native_pad
            inner = (self.window_px[3] * sub, w * sub)
        elif band is not None:
            scale_px, pad, inner, shape, raster_shape = band
        else:
            scale_px = out_scale_px / oversample
            pad = oversample * math.ceil(pad_um / dx_out_um)  # grid px, whole output px
            inner = (oh * oversample, ow * oversample)
        if band is None:
            shape = (cv2.getOptimalDFTSize(inner[0] + 2 * pad), cv2.getOptimalDFTSize(inner[1] + 2 * pad))
            raster_shape = shape
        self.oversample = out_scale_px / scale_px  # grid px per output px (may be fractional)
        self._bin = _whole_bin(inner, self.out_shape)
        self.dx_um = scale_px * config.um_per_px
        self._crop = (pad, pad, inner[0], inner[1])  # i0, j0, rows, cols of the window in the grid
        raster_scale_px = scale_px * shape[0] / raster_shape[0]
        grid = _Grid(x0 - pad * scale_px, self.window_px[1] - pad * scale_px, raster_scale_px, raster_shape)

        field = _rasterize(scene, config, grid)
        spectrum = cv2.dft(field.view(np.float32).reshape(*raster_shape, 2), flags=cv2.DFT_COMPLEX_OUTPUT)
        if raster_shape != shape:  # keep the band: the pupil passes nothing beyond the coarse grid's Nyquist
            rows = np.fft.fftfreq(shape[0], 1 / shape[0]).astype(int) % raster_shape[0]
            cols = np.fft.fftfreq(shape[1], 1 / shape[1]).astype(int) % raster_shape[1]
            scale = shape[0] * shape[1] / (raster_shape[0] * raster_shape[1])  # the inverse DFT's 1/N
            spectrum = spectrum[np.ix_(rows, cols)] * np.float32(scale)
        self._fy = np.fft.fftfreq(shape[0], self.dx_um).astype(np.float32)
        self._fx = np.fft.fftfreq(shape[1], self.dx_um).astype(np.float32)
        f = np.hypot(self._fy[:, None], self._fx[None, :]) * config.wavelength_um  # sin(angle)
        # Pupil edge softened over the condenser aperture (fraction of source points passing f).
        ramp = np.clip((config.na + config.condenser_na - f) / (2 * config.condenser_na), 0, 1)
        pupil = np.sqrt(0.5 - 0.5 * np.cos(np.pi * ramp)).astype(np.float32)
        self._spectrum = (spectrum.view(np.complex64)[..., 0] * pupil).astype(np.complex64)
        self._buf = np.empty_like(self._spectrum)

        # Camera: vignetting at output pixel centres (full-frame geometry) and noise per output px.
        ys = self.window_px[1] + (np.arange(oh) + 0.5) * (self.window_px[3] / oh)
        xs = x0 + (np.arange(ow) + 0.5) * out_scale_px
        cx, cy = config.frame_width_px / 2, config.frame_height_px / 2
        r2 = ((xs[None, :] - cx) ** 2 + (ys[:, None] - cy) ** 2) / (cx * cx + cy * cy)
        self._gain_dn = (255.0 * scene.brightness * (1 - config.vignetting * r2)).astype(np.float32)
        self._native_px_per_out = out_scale_px**2
        self._blur_kernel = None
        if config.motion_blur_px > 0:
            # Camera px -> output px (the motion smears the sensor image).
            self._blur_kernel = _motion_kernel(config.motion_blur_px / out_scale_px, float(self.rng.uniform(0, np.pi)))

    def intensity(self, offset_steps: float) -> np.ndarray:
        """Noise-free image intensity at ``offset_steps`` on ``out_shape`` (1 = unobstructed light; read-only)."""
        q = self.offset_quantum_steps
        if q <= 0:
            return self._intensity(float(offset_steps))
        key = round(float(offset_steps) / q) * q
        if key not in self._recent:
            if len(self._recent) >= _RECENT_INTENSITIES:
                del self._recent[next(iter(self._recent))]
            self._recent[key] = self._intensity(key)
            self._recent[key].flags.writeable = False
        return self._recent[key]

    def _intensity(self, offset_steps: float) -> np.ndarray:
        cfg = self.config
        dz_um = -float(offset_steps) * cfg.step_um
        c = np.float32(-np.pi * cfg.wavelength_um * dz_um)
        ay = np.exp(1j * c * self._fy**2).astype(np.complex64)
        ax = np.exp(1j * c * self._fx**2).astype(np.complex64)
        np.multiply(self._spectrum, ay[:, None], out=self._buf)
        self._buf *= ax[None, :]
        field = cv2.dft(self._buf.view(np.float32).reshape(*self._buf.shape, 2),
                        flags=cv2.DFT_INVERSE | cv2.DFT_SCALE | cv2.DFT_COMPLEX_OUTPUT)
        i0, j0, rows, cols = self._crop
        sigma = math.hypot(abs(dz_um) * cfg.condenser_na / 2, cfg.blur_sigma_px * cfg.um_per_px) / self.dx_um
        if self._bin is not None and sigma >= _BLUR_AFTER_BIN_MIN_PX * self._bin:
            # A blur this wide is smooth on the output grid: bin the window and a margin of whole output px,
            # then blur there (far cheaper than on the fine grid; near focus the order matters, see the constant).
            out_px, grid_px = _blur_margin(3 * sigma, self._bin)
            if grid_px <= min(i0, j0):
                win = field[i0 - grid_px:i0 + rows + grid_px, j0 - grid_px:j0 + cols + grid_px]
                inten = cv2.magnitude(win[..., 0], win[..., 1])
                inten *= inten
                oh, ow = self.out_shape
                inten = cv2.resize(inten, (ow + 2 * out_px, oh + 2 * out_px), interpolation=cv2.INTER_AREA)
                return cv2.GaussianBlur(inten, (0, 0), sigma / self._bin)[out_px:out_px + oh, out_px:out_px + ow]
        m = min(int(math.ceil(3 * sigma)) + 1, i0, j0) if sigma > 0.2 else 0
        win = field[i0 - m:i0 + rows + m, j0 - m:j0 + cols + m]
        inten = cv2.magnitude(win[..., 0], win[..., 1])
        inten *= inten
        if m:
            inten = cv2.GaussianBlur(inten, (0, 0), sigma)[m:m + rows, m:m + cols]
        if inten.shape != self.out_shape:
            inten = cv2.resize(inten, (self.out_shape[1], self.out_shape[0]), interpolation=cv2.INTER_AREA)
        return inten

    def frame(self, offset_steps: float) -> np.ndarray:
        """Return the 8-bit camera image, out_shape, seen when the motor must move ``offset_steps`` to focus."""
        return self.camera(self.intensity(offset_steps))

    def camera(self, inten: np.ndarray) -> np.ndarray:
        """Return the 8-bit camera image of an ``intensity`` (left unchanged).

        Applies motion blur, vignetting, noise, gamma and JPEG; the lens blur is already in the intensity.
        """
        if self._blur_kernel is not None:
            inten = cv2.filter2D(inten, -1, self._blur_kernel, borderType=cv2.BORDER_REFLECT)
        dn = inten * self._gain_dn
        cfg = self.config
        if cfg.noise:
            e_per_dn = cfg.full_well_e / 255.0
            var_e = np.maximum(dn, 0) * e_per_dn + cfg.read_noise_e**2
            sigma_dn = np.sqrt(var_e / self._native_px_per_out) / e_per_dn
            dn += sigma_dn * self.rng.standard_normal(dn.shape, dtype=np.float32)
        if cfg.sharpen:
            dn += cfg.sharpen * (dn - cv2.GaussianBlur(dn, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT))
        if cfg.gamma != 1.0:
            dn = 255.0 * np.clip(dn / 255.0, 0, 1) ** (1.0 / cfg.gamma)
        image = np.clip(np.rint(dn), 0, 255).astype(np.uint8)
        if cfg.jpeg_quality:
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
            image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        return image


def _band_layout(window_px, out_shape, sub: int, dx_needed_um: float, pad_um: float, config: OpticsConfig):
    """Grids for a large view binned by a whole factor >= 2: rasterized once natively, propagated coarser.

    The per-frame grid is the coarsest whose pixel, a rational multiple P/Q of the raster (native) pixel, still
    holds the field's band (``dx_needed_um``) and divides the window exactly; both grids span the same area, so the
    per-frame spectrum is the native spectrum's central part. Returns (scale_px, pad, inner, shape, raster_shape)
    in per-frame grid px, or None when the view is not binned by a whole factor, no such grid saves anything, the
    grid is over ``_BAND_MAX_OVERSAMPLE`` times finer than the output or the raster exceeds ``max_band_raster_px``.
    """
    _, _, w, h = window_px
    oh, ow = out_shape
    if w % ow or h % oh or w // ow != h // oh or w // ow < 2:
        return None
    raster_um = config.um_per_px / sub
    best = None
    for q in range(1, 9):
        p = int(dx_needed_um / _BAND_NYQUIST_MARGIN / raster_um * q + 1e-9)
        if (q < p <= w // ow * sub * q and math.gcd(p, q) == 1
                and cv2.getOptimalDFTSize(p) == p and cv2.getOptimalDFTSize(q) == q
                and (h * sub * q) % p == 0 and (w * sub * q) % p == 0):
            if best is None or p / q > best[0] / best[1]:
                best = (p, q)
    if best is None:
        return None
    p, q = best
    if (w // ow) * sub * q / p > _BAND_MAX_OVERSAMPLE:
        return None
    dx_um = raster_um * p / q
    pad = q * math.ceil(pad_um / dx_um / q)
    inner = (h * sub * q // p, w * sub * q // p)

    def sizes(n0: int) -> tuple[int, int]:
        """Return the smallest per-frame size >= n0 whose raster size is a fast DFT size too (p, q are)."""
        n = q * math.ceil(n0 / q)
        while cv2.getOptimalDFTSize(n) != n or cv2.getOptimalDFTSize(n * p // q) != n * p // q:
            n += q
        return n, n * p // q

    if (inner[0] + 2 * pad) * (inner[1] + 2 * pad) * (p / q) ** 2 > config.max_band_raster_px:
        return None
    (rows, raster_rows), (cols, raster_cols) = sizes(inner[0] + 2 * pad), sizes(inner[1] + 2 * pad)
    if raster_rows * raster_cols > config.max_band_raster_px:
        return None
    return p / q / sub, pad, inner, (rows, cols), (raster_rows, raster_cols)


def _whole_bin(inner: tuple[int, int], out_shape: tuple[int, int]) -> Fraction | None:
    """Grid px per output px when both axes bin by the same ratio of small whole numbers (> 1), else None."""
    ratio = Fraction(inner[0], out_shape[0])
    if ratio != Fraction(inner[1], out_shape[1]) or ratio <= 1 or ratio.denominator > _MAX_BIN_DENOMINATOR:
        return None
    return ratio


def _blur_margin(reach_grid_px: float, bin_ratio: Fraction) -> tuple[int, int]:
    """(output px, grid px) of the smallest margin beyond ``reach_grid_px`` that is whole on both grids."""
    step = bin_ratio.denominator
    out_px = step * math.ceil((reach_grid_px / bin_ratio + 1) / step)
    return out_px, int(out_px * bin_ratio)


def _motion_kernel(length_px: float, angle_rad: float) -> np.ndarray:
    """Normalised line kernel of ``length_px`` (sub-pixel lengths by a tapered end) along ``angle_rad``."""
    half = int(math.ceil(length_px / 2)) + 1
    k = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    for t in np.linspace(-length_px / 2, length_px / 2, max(2, int(length_px * 4) + 1)):
        x, y = half + t * math.cos(angle_rad), half + t * math.sin(angle_rad)
        j, i = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - j, y - i
        k[i, j] += (1 - fx) * (1 - fy)
        k[i, j + 1] += fx * (1 - fy)
        k[i + 1, j] += (1 - fx) * fy
        k[i + 1, j + 1] += fx * fy
    return k / k.sum()


def render(scene: Scene, offset_steps: float, config: OpticsConfig = OpticsConfig(),
           rng: np.random.Generator | None = None, window_px: tuple[int, int, int, int] | None = None,
           out_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Render one uint8 frame of ``window_px`` (full-frame px; default whole frame).

    At ``out_shape`` (default native sensor grid), seen when the motor must move ``offset_steps`` to reach
    focus.
    """
    renderer = StackRenderer(scene, config, out_shape, window_px, max_offset_steps=abs(offset_steps),
                             rng=rng if rng is not None else np.random.default_rng())
    return renderer.frame(offset_steps)


# --------------------------------------------------------------------------- the synthetic-stack distribution

def draw_stack(rng: np.random.Generator, config: OpticsConfig, range_steps: int,
               n_worms: int | None = None) -> tuple[Scene, int]:
    """Draw from the synthetic-stack distribution.

    A scene (1-3 worms unless ``n_worms``) and a true best index drawn uniformly within +-range_steps/4,
    for z indices spanning -range_steps..range_steps.
    """
    worms_here = int(rng.integers(1, 4)) if n_worms is None else int(n_worms)
    scene = make_scene(rng, config, worms_here)
    return scene, int(rng.integers(-(range_steps // 4), range_steps // 4 + 1))
