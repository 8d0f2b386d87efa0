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

"""core/metrics.py on hand-made errors, and core/atomic.py: a failed write leaves the old file intact."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

from celegans_autofocus.core import atomic
from celegans_autofocus.core.atomic import atomic_path, atomic_write_text
from celegans_autofocus.core.metrics import (DOF_STEPS, IN_FOCUS_STEPS, SIGN_THRESHOLD_STEPS, SUMMARY_KEYS,
                                             error_summary)


def test_thresholds():
    assert IN_FOCUS_STEPS == DOF_STEPS / 2 == 8.0 and SIGN_THRESHOLD_STEPS == 20.0


def test_prediction_errors_by_hand():
    true = np.array([-30.0, -10.0, 25.0, 40.0, 0.0, 5.0])
    pred = np.array([-20.0, 5.0, -5.0, 44.0, math.nan, 3.0])
    s = error_summary(pred - true, true)
    assert tuple(s) == SUMMARY_KEYS
    # finite errors: 10, 15, -30, 4, -2 (the NaN prediction is counted, not averaged)
    assert s["n"] == 5 and s["non_finite"] == 1
    assert s["mae_steps"] == pytest.approx((10 + 15 + 30 + 4 + 2) / 5)
    assert s["median_abs_error_steps"] == pytest.approx(10.0)
    assert s["p90_abs_error_steps"] == pytest.approx(np.percentile([10, 15, 30, 4, 2], 90))
    assert s["in_focus_fraction"] == pytest.approx(2 / 5)  # |4| and |-2| are within 8 steps
    # beyond 20 steps: -30 -> -20 right, 25 -> -5 wrong, 40 -> 44 right
    assert s["n_sign"] == 3 and s["sign_accuracy"] == pytest.approx(2 / 3)
    # bias near focus only (|true| <= 20, finite): -10 -> +15 and 5 -> -2
    assert s["bias_steps"] == pytest.approx((15 - 2) / 2)


def test_loop_errors_have_no_sign_accuracy():
    s = error_summary([9.0, -8.0, 0.0, 2.0])
    assert s["n"] == 4 and s["in_focus_fraction"] == pytest.approx(3 / 4)
    assert s["bias_steps"] == pytest.approx(3 / 4) and s["sign_accuracy"] is None and s["n_sign"] == 0


def test_nothing_to_average_is_none():
    s = error_summary([math.nan], [3.0])
    assert s["n"] == 0 and s["non_finite"] == 1
    assert all(s[k] is None for k in SUMMARY_KEYS if k not in ("n", "non_finite", "n_sign"))


def test_bad_shapes_and_truth_are_refused():
    with pytest.raises(ValueError, match="match"):
        error_summary([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        error_summary([1.0], [math.inf])


def test_atomic_write_replaces_and_keeps_permissions(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # a new file's permissions, not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_failing_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_path(path) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("half way")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_failing_replace_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
