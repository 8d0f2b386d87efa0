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

"""Focus-error thresholds and the one error summary used by evaluate, bag-eval, sim and bench.

Errors are signed motor steps. For a model, ``error = predicted - true offset``; for the closed
loop, ``error = best_z - lens_z`` (the steps still to move). Every summary has the keys of
:data:`SUMMARY_KEYS`, whatever produced it.
"""
from __future__ import annotations

import numpy as np

#: depth of field of the 1x objective, in motor steps (~80 um)
DOF_STEPS = 16.0
#: a frame is in focus when |error| <= this (half the depth of field)
IN_FOCUS_STEPS = DOF_STEPS / 2
#: beyond this |true offset| the sign of a prediction must be right; within it the bias is measured
SIGN_THRESHOLD_STEPS = 20.0

SUMMARY_KEYS = ("n", "non_finite", "mae_steps", "median_abs_error_steps", "p90_abs_error_steps", "bias_steps",
                "in_focus_fraction", "sign_accuracy", "n_sign")


def error_summary(error_steps, true_offset_steps=None, in_focus_steps: float = IN_FOCUS_STEPS,
                  sign_threshold_steps: float = SIGN_THRESHOLD_STEPS) -> dict:
    """Summary of signed errors (steps); non-finite errors (no usable prediction) are counted and left out.

    Keys (:data:`SUMMARY_KEYS`): ``n`` finite errors and ``non_finite``; ``mae_steps``,
    ``median_abs_error_steps`` and ``p90_abs_error_steps`` of |error|; ``in_focus_fraction``, the
    share with |error| <= ``in_focus_steps``; ``bias_steps``, the mean error where |true offset| <=
    ``sign_threshold_steps`` (near focus, where a bias leaves the lens off focus; all errors without
    ``true_offset_steps``); ``sign_accuracy``, the share of predictions (true + error) with the true
    offset's sign where |true offset| > ``sign_threshold_steps``, over ``n_sign`` such errors. A value
    with nothing to average is None.
    """
    err = np.asarray(error_steps, dtype=np.float64)
    true = None if true_offset_steps is None else np.asarray(true_offset_steps, dtype=np.float64)
    if err.ndim != 1 or (true is not None and true.shape != err.shape):
        raise ValueError(f"errors must be 1-D and match the true offsets, got shapes {err.shape} and "
                         f"{None if true is None else true.shape}")
    ok = np.isfinite(err)
    if true is not None and not np.isfinite(true).all():
        raise ValueError("true offsets must be finite")
    e = err[ok]
    t = np.zeros(e.size) if true is None else true[ok]  # without true offsets nothing is far from focus
    far = np.abs(t) > sign_threshold_steps
    sign_ok = np.sign(t[far] + e[far]) == np.sign(t[far])

    def stat(values, fn):
        return float(fn(values)) if values.size else None

    return {
        "n": int(e.size),
        "non_finite": int((~ok).sum()),
        "mae_steps": stat(np.abs(e), np.mean),
        "median_abs_error_steps": stat(np.abs(e), np.median),
        "p90_abs_error_steps": stat(np.abs(e), lambda v: np.percentile(v, 90)),
        "bias_steps": stat(e[~far], np.mean),
        "in_focus_fraction": stat(np.abs(e) <= in_focus_steps, np.mean),
        "sign_accuracy": stat(sign_ok, np.mean),
        "n_sign": int(far.sum()),
    }
