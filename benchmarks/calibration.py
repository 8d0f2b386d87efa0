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

"""Calibration of a model's predicted uncertainty on held-out synthetic crops: share of errors within k sigma.

    PYTHONPATH=. .venv/bin/python benchmarks/calibration.py MODEL.onnx [MORE.onnx ...] \
        [--views 64] [--seed 2024] [--fov-px 500 1000] [--range-steps 200] [--look default] \
        [--png benchmarks/calibration.png] [--by-offset] [--dihedral]
    (figures: benchmarks/calibration.md)

Held-out set: ``views`` random scenes of ``seed`` (not the training seeds, nor the validation seed 999 that
chose the checkpoint), one crop each of a ``fov-px`` size around a worm (centre jittered by 8% of the fov),
imaged at 10 offsets uniform in +-``range-steps``, rendered and preprocessed as each model's training data
(``heldout.held_out``: 128 px renders for a 96 px input), and served through the exported ONNX
file by ``FocusPredictor`` (ONNX Runtime). For a calibrated Gaussian, 68.3% of the errors lie within 1
sigma and 95.4% within 2 sigma. Models without a sigma output get MAE and sign accuracy only.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from celegans_autofocus.core.optics import LOOKS
from celegans_autofocus.core.metrics import SIGN_THRESHOLD_STEPS
from celegans_autofocus.core.predictor import FocusPredictor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import held_out  # noqa: E402

KS = np.linspace(0.0, 3.0, 61)
#: edges of the signed true-offset bins of the --by-offset table, in steps
OFFSET_EDGES_STEPS = (-200, -150, -100, -50, -SIGN_THRESHOLD_STEPS, SIGN_THRESHOLD_STEPS, 50, 100, 150, 200)


def summary(err: np.ndarray, true: np.ndarray, sigma: np.ndarray | None) -> dict:
    far = np.abs(true) > SIGN_THRESHOLD_STEPS
    near = ~far
    row = {"n": len(err), "mae": float(np.mean(np.abs(err))),
           "sign": float(np.mean(np.sign(err[far] + true[far]) == np.sign(true[far]))),
           "bias_near": float(np.mean(err[near])) if near.any() else float("nan")}
    if sigma is not None:
        z = np.abs(err) / sigma
        from scipy.stats import spearmanr

        row.update({"within_1": float(np.mean(z <= 1)), "within_2": float(np.mean(z <= 2)),
                    "median_sigma": float(np.median(sigma)),
                    "spearman": float(spearmanr(np.abs(err), sigma).statistic)})
    return row


def by_offset(name: str, offsets: np.ndarray, true: np.ndarray, sigmas: np.ndarray | None) -> list[str]:
    """Markdown rows: where a model's error lies, per signed true offset (``OFFSET_EDGES_STEPS``)."""
    err, total = offsets - true, np.abs(offsets - true).sum()
    edges = list(OFFSET_EDGES_STEPS)
    edges[0], edges[-1] = -np.inf, np.inf  # the renders' own extremes (+-range_steps)
    shown = [f"{lo:+g}..{hi:+g}" for lo, hi in zip(OFFSET_EDGES_STEPS, OFFSET_EDGES_STEPS[1:])]
    shown[0], shown[-1] = f"..{OFFSET_EDGES_STEPS[1]:+g}", f"{OFFSET_EDGES_STEPS[-2]:+g}.."
    rows = []
    for lo, hi, label in zip(edges, edges[1:], shown):
        sel = (true >= lo) & (true < hi)
        if not sel.any():
            continue
        e, far = err[sel], np.abs(true[sel]) > SIGN_THRESHOLD_STEPS
        wrong = np.mean(np.sign(offsets[sel][far]) != np.sign(true[sel][far])) if far.any() else float("nan")
        sigma = f"{np.median(sigmas[sel]):.1f}" if sigmas is not None else ""
        rows.append(f"| {name} | {label} | {sel.sum()} | {np.abs(e).mean():.1f} | {e.mean():+.1f} "
                    f"| {wrong:.3f} | {np.abs(e).sum() / total:.2f} | {sigma} |")
    return rows


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.special import erf

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    a.plot(KS, erf(KS / math.sqrt(2)), "k--", label="calibrated Gaussian")
    for name, r in results.items():
        if r["sigma"] is None:
            continue
        z = np.abs(r["err"]) / r["sigma"]
        a.plot(KS, [np.mean(z <= k) for k in KS], label=name)
        b.loglog(r["sigma"], np.abs(r["err"]) + 0.1, ".", ms=3, alpha=0.5, label=name)
    a.axvline(2, color="grey", lw=0.5)
    a.set(xlabel="k (predicted sigmas)", ylabel="share of |error| <= k sigma", title="calibration (held out)")
    a.legend()
    lim = [1, 1000]
    b.plot(lim, lim, "k:", lw=0.8, label="|error| = sigma")
    b.plot(lim, [2 * v for v in lim], "k--", lw=0.8, label="|error| = 2 sigma")
    b.set(xlabel="predicted sigma (steps)", ylabel="|error| + 0.1 (steps)", title="error vs predicted sigma")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--views", type=int, default=64)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--fov-px", type=int, nargs="+", default=[500, 1000])
    parser.add_argument("--range-steps", type=float, default=200.0)
    parser.add_argument("--look", default="default", choices=list(LOOKS), help="the held-out renders' look")
    parser.add_argument("--png", type=Path, default=Path("benchmarks/calibration.png"))
    parser.add_argument("--dihedral", action="store_true",
                        help="also the MAE of the mean answer over the 8 quarter turns and flips of each render")
    parser.add_argument("--by-offset", action="store_true",
                        help="also tabulate each model's error per signed true offset (where the MAE comes from)")
    args = parser.parse_args()
    predictors = [FocusPredictor(m, providers=["CPUExecutionProvider"], intra_op_threads=1) for m in args.models]
    data, results = {}, {}
    print("| model | fov | n | MAE | sign acc. (\\|true\\| > 20) | mean error (\\|true\\| <= 20) | within 1 sigma "
          "| within 2 sigma | median sigma | Spearman(\\|err\\|, sigma) |\n|---|---|---|---|---|---|---|---|---|---|")
    for p in predictors:
        if p.spec not in data:
            data[p.spec] = held_out(p.spec, args.fov_px, args.views, args.seed, range_steps=args.range_steps,
                                    look=args.look)
        images, true, fov = data[p.spec]
        offsets, sigmas = p.predict_inputs(images)
        err = offsets - true
        results[p.name] = {"err": err, "sigma": sigmas, "true": true}
        for label, sel in [(str(f), fov == f) for f in args.fov_px] + [("all", np.ones(len(err), bool))]:
            r = summary(err[sel], true[sel], None if sigmas is None else sigmas[sel])
            cells = [f"{r['mae']:.1f}", f"{r['sign']:.3f}", f"{r['bias_near']:+.1f}"] + (
                [f"{r['within_1']:.3f}", f"{r['within_2']:.3f}", f"{r['median_sigma']:.1f}", f"{r['spearman']:.2f}"]
                if sigmas is not None else ["", "", "", ""])
            print(f"| {p.name} | {label} | {r['n']} | " + " | ".join(cells) + " |")
    if args.dihedral:
        for p in predictors:
            images, true, _ = data[p.spec]
            views = [np.rot90(images, k, axes=(1, 2))[:, :, ::flip] for k in range(4) for flip in (1, -1)]
            mean = np.mean([p.predict_inputs(np.ascontiguousarray(v))[0] for v in views], axis=0)
            print(f"\n{p.name}: mean over the 8 quarter turns and flips: MAE {np.abs(mean - true).mean():.1f} "
                  f"(one view: {np.abs(results[p.name]['err']).mean():.1f})")
    if args.by_offset:
        print("\n| model | true offset (steps) | n | MAE | mean error | wrong sign (\\|true\\| > 20) | share of the "
              "summed \\|error\\| | median sigma |\n|---|---|---|---|---|---|---|---|")
        for p in predictors:
            r = results[p.name]
            print("\n".join(by_offset(p.name, r["err"] + r["true"], r["true"], r["sigma"])))
    if any(r["sigma"] is not None for r in results.values()):
        plot(results, args.png)
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
