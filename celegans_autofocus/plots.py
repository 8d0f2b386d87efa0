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

"""PNG plots for the closed loop, the benchmark and bag evaluation (matplotlib, Agg backend).

Every function writes one PNG to ``path`` (parent directories are created) and returns it.
Units are motor steps (:data:`core.sensor.STEP_UM` each) and seconds.
"""
from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .core.metrics import DOF_STEPS  # noqa: E402
from .core.sensor import STEP_UM  # noqa: E402


def _save(fig: "plt.Figure", path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (a PNG when it has no suffix, as matplotlib writes it); return the file written."""
    path = Path(path)
    path = path if path.suffix else path.with_name(f"{path.name}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _timeline_axes(ax: "plt.Axes", t_s: Sequence[float], true_best_z: Sequence[float],
                   lens_z: Sequence[float], predicted_best_z: Sequence[float] | None,
                   dof_steps: float) -> None:
    t = np.asarray(t_s, dtype=float)
    best = np.asarray(true_best_z, dtype=float)
    ax.fill_between(t, best - dof_steps / 2, best + dof_steps / 2, color="tab:green", alpha=0.2,
                    label=f"in focus (|error| <= {dof_steps / 2:g} steps)")
    ax.plot(t, best, color="tab:green", lw=1.5, label="true best plane")
    ax.plot(t, np.asarray(lens_z, dtype=float), color="tab:blue", lw=1.5, drawstyle="steps-post",
            label="lens z")
    if predicted_best_z is not None:
        pred = np.asarray(predicted_best_z, dtype=float)
        ax.plot(t, pred, ".", color="tab:red", ms=4, label="predicted best plane (lens z + offset)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"z (motor steps, 1 step = {STEP_UM:g} um)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def plot_focus_timeline(t_s: Sequence[float], true_best_z: Sequence[float], lens_z: Sequence[float],
                        predicted_best_z: Sequence[float] | None, path: str | Path,
                        dof_steps: float = DOF_STEPS, title: str = "Closed-loop focus") -> Path:
    """Plot the true best plane, lens position and predictions over time; NaN predictions are gaps."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    _timeline_axes(ax, t_s, true_best_z, lens_z, predicted_best_z, dof_steps)
    ax.set_title(title)
    return _save(fig, path)


def plot_bench(rows: Sequence[Mapping], examples: Mapping[str, Mapping], path: str | Path,
               dof_steps: float = DOF_STEPS, title: str = "CNN one-shot vs classical search") -> Path:
    """Plot the benchmark figure.

    Frames-to-focus and in-focus share per controller and scenario kind, plus one example episode per
    controller (same scenario).

    ``rows``: per-episode dicts with keys controller, kind, frames_to_focus (None = never),
    in_focus_fraction. ``examples``: controller -> dict of t_s, true_best_z, lens_z,
    predicted_best_z (or None) and scenario (name).
    """
    controllers = sorted({r["controller"] for r in rows})
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    n_ex = len(examples)
    fig = plt.figure(figsize=(12, 4 + 3.2 * n_ex))
    grid = fig.add_gridspec(1 + n_ex, 2)
    ax_f = fig.add_subplot(grid[0, 0])
    ax_i = fig.add_subplot(grid[0, 1])
    width = 0.8 / max(len(controllers), 1)
    for ci, ctrl in enumerate(controllers):
        pos = np.arange(len(kinds)) + (ci - (len(controllers) - 1) / 2) * width
        frames, focus = [], []
        for kind in kinds:
            sel = [r for r in rows if r["controller"] == ctrl and r["kind"] == kind]
            n_frames = max((r.get("n_frames", 0) for r in sel), default=0)
            frames.append([r["frames_to_focus"] if r["frames_to_focus"] is not None else n_frames
                           for r in sel] or [np.nan])
            focus.append(np.mean([r["in_focus_fraction"] for r in sel]) if sel else np.nan)
        box = ax_f.boxplot(frames, positions=pos, widths=width * 0.9, patch_artist=True)
        colour = f"C{ci}"
        for patch in box["boxes"]:
            patch.set_facecolor(colour)
            patch.set_alpha(0.5)
        ax_i.bar(pos, focus, width=width * 0.9, color=colour, alpha=0.7, label=ctrl)
    for ax in (ax_f, ax_i):
        ax.set_xticks(np.arange(len(kinds)), kinds)
        ax.grid(alpha=0.3, axis="y")
    ax_f.set_ylabel("frames to focus (never = episode length)")
    ax_i.set_ylabel("share of frames in focus")
    ax_i.set_ylim(0, 1)
    ax_i.legend(fontsize=8)
    for k, (ctrl, ex) in enumerate(examples.items()):
        ax = fig.add_subplot(grid[1 + k, :])
        _timeline_axes(ax, ex["t_s"], ex["true_best_z"], ex["lens_z"], ex.get("predicted_best_z"), dof_steps)
        ax.set_title(f"{ctrl}: scenario {ex.get('scenario', '')}", fontsize=10)
    fig.suptitle(title)
    return _save(fig, path)


def plot_bag_eval(t_s: Sequence[float], true_offset_steps: Sequence[float],
                  predicted_offset_steps: Sequence[float], path: str | Path,
                  dof_steps: float = DOF_STEPS, title: str = "bag-eval") -> Path:
    """Predicted against true offset (scatter with the identity and the in-focus band) and both over time."""
    t = np.asarray(t_s, dtype=float)
    true = np.asarray(true_offset_steps, dtype=float)
    pred = np.asarray(predicted_offset_steps, dtype=float)
    fig, (ax_s, ax_t) = plt.subplots(1, 2, figsize=(12, 4.8))
    lim = float(np.nanmax(np.abs(np.concatenate([true, pred])))) * 1.05 + 1 if true.size else 1.0
    ax_s.fill_between([-lim, lim], [-lim - dof_steps / 2, lim - dof_steps / 2],
                      [-lim + dof_steps / 2, lim + dof_steps / 2], color="tab:green", alpha=0.2,
                      label=f"|error| <= {dof_steps / 2:g} steps")
    ax_s.plot([-lim, lim], [-lim, lim], color="tab:green", lw=1)
    ax_s.scatter(true, pred, s=8, alpha=0.6, label="frames")
    ax_s.set_xlim(-lim, lim)
    ax_s.set_ylim(-lim, lim)
    ax_s.set_xlabel("true offset (steps)")
    ax_s.set_ylabel("predicted offset (steps)")
    ax_s.legend(fontsize=8)
    ax_s.grid(alpha=0.3)
    ax_t.plot(t, true, color="tab:green", label="true offset")
    ax_t.plot(t, pred, ".", color="tab:red", ms=4, label="predicted offset")
    ax_t.set_xlabel("time (s)")
    ax_t.set_ylabel("offset (steps)")
    ax_t.legend(fontsize=8)
    ax_t.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)


def plot_focus_curves(curves: Mapping[str, Mapping[int, float]], best_z: int, reason: str | None,
                      path: str | Path, title: str = "focus curves", mode: str | None = None) -> Path:
    """Plot a stack's focus curves (each scaled to 0..1) against z, the chosen best z, and why it is flagged."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, curve in curves.items():
        z = np.array(sorted(curve))
        v = np.array([curve[k] for k in z], dtype=float)
        span = float(np.ptp(v)) or 1.0
        ax.plot(z, (v - v.min()) / span, ".-", lw=1.2, ms=3, label=name)
    ax.axvline(best_z, color="k", ls="--", lw=1, label=f"best z = {best_z}" + (f" ({mode})" if mode else ""))
    ax.set_xlabel(f"z (motor steps, 1 step = {STEP_UM:g} um unless stack.yaml says otherwise)")
    ax.set_ylabel("measure, scaled to 0..1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("\n".join([title, *textwrap.wrap(f"flagged: {reason}", 100)]) if reason else title, fontsize=9)
    return _save(fig, path)
