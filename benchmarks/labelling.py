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

"""Labelling evidence: each labeller on real focus series (published best) and simulated stacks (true best).

Every labeller goes through the code ``celegans-autofocus label --from-measure`` runs
(``core.dataset.labelling.label_measured``), flags included: each single focus measure (its argmax,
flagged by the focus-curve checks) and ``auto`` (``core.focus.best_plane``).

- Real: a dataset written by ``benchmarks/real_stacks.py`` (one z index per image); a hit is a best
  plane within one image of the published one.
- Simulated: stacks drawn as ``celegans-autofocus synth`` draws them (``core.optics.draw_stack``,
  z -range..range every k steps), over named optics variants, each in two views (the whole field binned
  to 648x486, or ``--full-px`` wide, and a native 500x500 crop around a worm); a hit is within 8 steps of
  the true best plane.

    python benchmarks/labelling.py --real /work/realstacks/dataset --per-variant 4 --json /tmp/labelling.json
    python benchmarks/labelling.py --per-variant 6 --seed 3003 --only random/crop500_1   # just that stack, same draw
    python benchmarks/labelling.py --relabel /tmp/labelling.json   # the stored curves, labelled by today's rules
    python benchmarks/labelling.py --seed 3002 --only random/crop500_5 --noise-draws 6   # noise-free, 6 noise draws
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from celegans_autofocus.core import focus  # noqa: E402
from celegans_autofocus.core.dataset.io import read_image  # noqa: E402
from celegans_autofocus.core.dataset.labelling import AGREE_STEPS, Measured, label_measured  # noqa: E402
from celegans_autofocus.core.dataset.layout import Stack, discover  # noqa: E402
from celegans_autofocus.core.optics import (  # noqa: E402
    SIMULATOR_LOOK, OpticsConfig, StackRenderer, draw_stack, look_config)
from celegans_autofocus.core.randomize import random_config  # noqa: E402

SIM_TOLERANCE_STEPS = 8
REAL_TOLERANCE_IMAGES = 1
FULL_PX = 648  # the whole-field stacks' default width (4x binned); --full-px
LABELLERS = [focus.AUTO, *focus.MEASURES]
CURVES = list(dict.fromkeys([*focus.MEASURES, *focus.RULE_CURVES]))  # every measure, and auto's coarser scales
VARIANTS = {  # name -> OpticsConfig (None: a random_config draw per stack)
    "default": OpticsConfig(),
    "low_mag": OpticsConfig(um_per_px=3.1),
    "absorbing": OpticsConfig(body_absorb_per_um=0.006, cuticle_absorb_per_um=0.1, inclusion_scale=1.5),
    "phase_only": OpticsConfig(body_absorb_per_um=0.0002, cuticle_absorb_per_um=0.002, inclusion_scale=0.1),
    "high_na": OpticsConfig(na=0.12, condenser_na=0.06),
    "random": None,
    "simulator": look_config(SIMULATOR_LOOK),  # the simulator's look since 2026-12-03 (after random: its draws stay)
}


def _label_all(stack: Stack, curves: dict[str, dict[int, float]],
               agree_steps: float) -> dict[str, tuple[int, str | None]]:
    """Each labeller's (best z, flag reason) for one stack's measure curves."""
    out = {}
    for name in LABELLERS:
        used = focus.RULE_CURVES if name == focus.AUTO else (name,)
        res = label_measured(Measured(stack, name, {m: curves[m] for m in used if m in curves}, []),
                             use_stack_best=False,
                             agree_steps=agree_steps)
        out[name] = (res.measured_best, res.ambiguous_reason)
    return out


def real_rows(dataset: Path, agree_steps: float) -> list[dict]:
    rows = []
    for stack in discover(dataset).stacks:
        curves: dict[str, dict[int, float]] = {m: {} for m in CURVES}
        for z, path in stack.files.items():
            for m, v in focus.measure_values(read_image(path), CURVES).items():
                curves[m][z] = v
        rows.append({"set": "real", "group": stack.plate, "stack": stack.name, "truth": int(stack.meta["best_index"]),
                     "tolerance": REAL_TOLERANCE_IMAGES, "picks": _label_all(stack, curves, agree_steps),
                     "curves": curves})
        print(f"real {stack.plate}/{stack.name}: best {rows[-1]['truth']} auto {rows[-1]['picks'][focus.AUTO]}",
              file=sys.stderr, flush=True)
    return rows


def _draws(per_variant: int, seed: int, range_steps: int, step_every: int, only: set[str] | None,
           full_px: int = FULL_PX):
    """Yield (variant, "view_k", config, true best, renderer, z, offsets) of each simulated stack (``only``: these).

    The even stacks are the whole field ``full_px`` wide ("full648_k"; 2592: native), the odd ones a native crop.
    """
    zs = np.arange(-range_steps, range_steps + 1, step_every)
    for v, (variant, base) in enumerate(VARIANTS.items()):
        for k, seq in enumerate(np.random.SeedSequence([seed, v]).spawn(per_variant)):
            rng = np.random.default_rng(seq)
            config = random_config(rng) if base is None else base
            scene, best = draw_stack(rng, config, range_steps)
            view = (f"full{full_px}", "crop500")[k % 2]
            if only is not None and f"{variant}/{view}_{k}" not in only:
                continue
            if k % 2 == 0:
                window, shape = None, (round(full_px * config.frame_height_px / config.frame_width_px), full_px)
            else:
                cx, cy = scene.worms[0].centroid_px
                x0 = int(np.clip(round(cx) - 250, 0, config.frame_width_px - 500))
                y0 = int(np.clip(round(cy) - 250, 0, config.frame_height_px - 500))
                window, shape = (x0, y0, 500, 500), None
            offsets = best - zs
            renderer = StackRenderer(scene, config, shape, window, rng=rng,
                                     max_offset_steps=float(np.abs(offsets).max()))
            yield variant, f"{view}_{k}", config, int(best), renderer, zs, offsets


def _sim_row(variant: str, name: str, config: OpticsConfig, best: int, frames, zs: np.ndarray,
             agree_steps: float) -> dict:
    """Measure one simulated stack's ``frames`` (one per z of ``zs``) and label it with every labeller."""
    curves: dict[str, dict[int, float]] = {m: {} for m in CURVES}
    for z, frame in zip(zs, frames):
        for m, v in focus.measure_values(frame, CURVES).items():
            curves[m][int(z)] = v
    stack = Stack(variant, name, Path("."), {int(z): Path(f"z_{int(z)}.png") for z in zs}, {"step_um": config.step_um})
    return {"set": "sim", "group": variant, "stack": name, "truth": best, "tolerance": SIM_TOLERANCE_STEPS,
            "picks": _label_all(stack, curves, agree_steps), "curves": curves,
            "optics": {"um_per_px": config.um_per_px, "na": config.na, "body_absorb_per_um": config.body_absorb_per_um,
                       "inclusion_scale": config.inclusion_scale}}


def sim_rows(per_variant: int, seed: int, range_steps: int, step_every: int, agree_steps: float,
             only: set[str] | None = None, full_px: int = FULL_PX) -> list[dict]:
    """Render and label the simulated stacks (``only``: just these "variant/view_k" names; each is drawn alike)."""
    rows = []
    t0 = time.perf_counter()
    for variant, name, config, best, renderer, zs, offsets in _draws(per_variant, seed, range_steps, step_every, only,
                                                                     full_px):
        rows.append(_sim_row(variant, name, config, best, (renderer.frame(off) for off in offsets), zs, agree_steps))
        pick = rows[-1]["picks"][focus.AUTO]
        print(f"[{time.perf_counter() - t0:5.0f} s] sim {variant}/{name}: best {best:+d} auto {pick}",
              file=sys.stderr, flush=True)
    return rows


def noise_draw_rows(per_variant: int, seed: int, range_steps: int, step_every: int, agree_steps: float,
                    only: set[str], draws: int, full_px: int = FULL_PX) -> list[dict]:
    """Label each ``only`` stack as drawn, without camera noise, and with ``draws`` fresh noise draws.

    The optics are rendered once per stack; only the camera runs again. "as drawn" reproduces the full run's
    curves (the same noise); "noise-free" is the same scene and camera with ``noise=False``; "noise N" draws the
    camera noise from the generator seeded by (seed, N). The stack name carries the reading ("crop500_5 noise 2").
    """
    rows = []
    for variant, name, config, best, renderer, zs, offsets in _draws(per_variant, seed, range_steps, step_every, only,
                                                                     full_px):
        intensities = [renderer.intensity(off).copy() for off in offsets]
        readings = [("as drawn", config, renderer.rng), ("noise-free", replace(config, noise=False), renderer.rng)]
        readings += [(f"noise {n}", config, np.random.default_rng([seed, n])) for n in range(draws)]
        for reading, camera_config, camera_rng in readings:
            renderer.config, renderer.rng = camera_config, camera_rng  # the camera reads these two; the optics are done
            rows.append(_sim_row(variant, f"{name} {reading}", config, best,
                                 (renderer.camera(i) for i in intensities), zs, agree_steps))
            print(f"sim {variant}/{name} {reading}: best {best:+d} auto {rows[-1]['picks'][focus.AUTO]}",
                  file=sys.stderr, flush=True)
    return rows


def relabel(rows: list[dict], agree_steps: float) -> list[dict]:
    """Label the simulated stacks' focus curves of a ``--json`` file again with the current rules (no rendering)."""
    out = []
    for r in (r for r in rows if r["set"] == "sim"):
        curves = {m: {int(z): v for z, v in c.items()} for m, c in r["curves"].items()}
        files = {z: Path(f"z_{z}.png") for z in curves[focus.RULE_MEASURES[0]]}
        r["picks"] = _label_all(Stack(r["group"], r["stack"], Path("."), files), curves, agree_steps)
        out.append(r)
    return out


def _stats(rows: list[dict], name: str) -> tuple[int, int, int, int]:
    """(hits, misses, misses flagged, stacks flagged) of labeller ``name``."""
    hit = [abs(r["picks"][name][0] - r["truth"]) <= r["tolerance"] for r in rows]
    flagged = [r["picks"][name][1] is not None for r in rows]
    return sum(hit), len(rows) - sum(hit), sum(f and not h for h, f in zip(hit, flagged)), sum(flagged)


def _cells(rows: list[dict], name: str) -> str:
    if not rows:
        return "- | - | -"
    hits, misses, caught, flagged = _stats(rows, name)
    return f"{hits}/{len(rows)} ({100 * hits / len(rows):.0f}%) | {caught}/{misses} | {flagged}/{len(rows)}"


def report(rows: list[dict]) -> str:
    real = [r for r in rows if r["set"] == "real"]
    sim = [r for r in rows if r["set"] == "sim"]
    lines = ["| labeller | real: within 1 image | real misses flagged | real flagged | "
             "sim: within 8 steps | sim misses flagged | sim flagged |", "|---|---|---|---|---|---|---|"]
    for name in LABELLERS:
        lines.append(f"| {name} | {_cells(real, name)} | {_cells(sim, name)} |")
    lines += ["", f"`{focus.AUTO}` per source / optics variant:", "",
              "| set | group | within tolerance | misses flagged | flagged |", "|---|---|---|---|---|"]
    for group in dict.fromkeys((r["set"], r["group"]) for r in rows):
        sel = [r for r in rows if (r["set"], r["group"]) == group]
        lines.append(f"| {group[0]} | {group[1]} | {_cells(sel, focus.AUTO)} |")
    lines += ["", f"`{focus.AUTO}` misses and flags:", ""]
    for r in rows:
        z, why = r["picks"][focus.AUTO]
        if why or abs(z - r["truth"]) > r["tolerance"]:
            ok = "hit" if abs(z - r["truth"]) <= r["tolerance"] else "MISS"
            lines.append(f"- {r['set']} {r['group']}/{r['stack']}: best {r['truth']}, picked {z} ({ok}); flag: {why}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", type=Path, help="dataset written by benchmarks/real_stacks.py")
    ap.add_argument("--per-variant", type=int, default=4, help="simulated stacks per optics variant")
    ap.add_argument("--seed", type=int, default=3000)
    ap.add_argument("--range-steps", type=int, default=200)
    ap.add_argument("--step-every", type=int, default=4)
    ap.add_argument("--full-px", type=int, default=FULL_PX,
                    help="width of the whole-field stacks (the even ones; 2592 = native, no binning)")
    ap.add_argument("--agree-steps", type=float, default=AGREE_STEPS, help="as label --agree-steps")
    ap.add_argument("--only", nargs="+", metavar="VARIANT/STACK",
                    help="render just these simulated stacks, e.g. random/crop500_1 (drawn as in the full run)")
    ap.add_argument("--noise-draws", type=int, metavar="N",
                    help="with --only: label each stack as drawn, without camera noise and with N fresh noise draws "
                         "(the optics rendered once)")
    ap.add_argument("--relabel", type=Path, metavar="JSON",
                    help="label the simulated curves of this --json file again with the current rules (no rendering)")
    ap.add_argument("--json", type=Path, help="write every stack's picks, flags and focus curves here")
    args = ap.parse_args()
    if args.noise_draws is not None and (not args.only or args.noise_draws < 0 or args.relabel):
        ap.error("--noise-draws N (N >= 0) needs --only and renders: not with --relabel")
    t0 = time.perf_counter()
    rows = real_rows(args.real, args.agree_steps) if args.real else []
    if args.relabel:
        rows += relabel(json.loads(args.relabel.read_text()), args.agree_steps)
    elif args.noise_draws is not None:
        rows += noise_draw_rows(args.per_variant, args.seed, args.range_steps, args.step_every, args.agree_steps,
                                set(args.only), args.noise_draws, args.full_px)
    else:
        rows += sim_rows(args.per_variant, args.seed, args.range_steps, args.step_every, args.agree_steps,
                         set(args.only) if args.only else None, args.full_px)
    print(report(rows))
    print(f"\ntotal time {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
