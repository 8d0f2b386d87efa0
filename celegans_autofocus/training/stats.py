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

"""The paired comparison of two models' errors (Shapiro-Wilk, then Wilcoxon signed-rank)."""
from __future__ import annotations

import math

import numpy as np


def paired_comparison(abs_err_a: np.ndarray, abs_err_b: np.ndarray, alpha: float = 0.05) -> dict:
    """Paper section 3.2: differences d_i = e_a,i - e_b,i; Shapiro-Wilk on d, then Wilcoxon signed-rank.

    Returns the test statistics and p-values, the mean/median difference (negative: A is better)
    and a one-line verdict at ``alpha``.
    """
    from scipy import stats

    a = np.asarray(abs_err_a, dtype=np.float64)
    b = np.asarray(abs_err_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired errors must be 1-D of equal length, got {a.shape} and {b.shape}")
    if a.size < 3:
        raise ValueError(f"need >= 3 paired images for the tests, got {a.size}")
    d = a - b
    shapiro = stats.shapiro(d) if np.ptp(d) > 0 else None
    if np.all(d == 0):
        wilcoxon_stat, wilcoxon_p = math.nan, 1.0
    else:
        res = stats.wilcoxon(a, b, zero_method="wilcox")
        wilcoxon_stat, wilcoxon_p = float(res.statistic), float(res.pvalue)
    normal = None if shapiro is None else bool(shapiro.pvalue >= alpha)
    better = "A" if np.median(d) < 0 else "B"
    verdict = (f"significant difference (Wilcoxon p={wilcoxon_p:.3g} < {alpha}); {better} has lower errors"
               if wilcoxon_p < alpha else f"no significant difference (Wilcoxon p={wilcoxon_p:.3g} >= {alpha})")
    return {
        "n": int(a.size),
        "mae_a_steps": float(a.mean()),
        "mae_b_steps": float(b.mean()),
        "mean_diff_steps": float(d.mean()),
        "median_diff_steps": float(np.median(d)),
        "shapiro_w": None if shapiro is None else float(shapiro.statistic),
        "shapiro_p": None if shapiro is None else float(shapiro.pvalue),
        "differences_normal": normal,
        "wilcoxon_statistic": wilcoxon_stat,
        "wilcoxon_p": wilcoxon_p,
        "verdict": verdict,
    }
