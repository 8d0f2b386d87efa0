"""Error summaries and the paired comparison of two models (Shapiro-Wilk, then Wilcoxon signed-rank)."""
from __future__ import annotations

import math

import numpy as np

#: |true offset| beyond which the sign of a prediction must be right (outside the depth of field).
SIGN_BEYOND_STEPS = 20.0
SUMMARY_COLUMNS = ("n", "mae_steps", "median_abs_steps", "p90_abs_steps", "sign_accuracy", "n_sign")


def error_summary(true_steps: np.ndarray, pred_steps: np.ndarray,
                  sign_beyond_steps: float = SIGN_BEYOND_STEPS) -> dict:
    """MAE, median and p90 of |error| in steps, and sign accuracy where |true| > ``sign_beyond_steps``."""
    true_steps = np.asarray(true_steps, dtype=np.float64)
    pred_steps = np.asarray(pred_steps, dtype=np.float64)
    if true_steps.shape != pred_steps.shape:
        raise ValueError(f"true {true_steps.shape} and predicted {pred_steps.shape} offsets differ in shape")
    n = int(true_steps.size)
    if n == 0:
        return {"n": 0, "mae_steps": None, "median_abs_steps": None, "p90_abs_steps": None,
                "sign_accuracy": None, "n_sign": 0}
    err = np.abs(pred_steps - true_steps)
    beyond = np.abs(true_steps) > sign_beyond_steps
    n_sign = int(beyond.sum())
    sign_ok = np.sign(pred_steps[beyond]) == np.sign(true_steps[beyond])
    return {
        "n": n,
        "mae_steps": float(err.mean()),
        "median_abs_steps": float(np.median(err)),
        "p90_abs_steps": float(np.percentile(err, 90)),
        "sign_accuracy": float(sign_ok.mean()) if n_sign else None,
        "n_sign": n_sign,
    }


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
