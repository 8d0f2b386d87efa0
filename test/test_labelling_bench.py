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

"""benchmarks/labelling.py's noise draws: the same optics, the camera run again with and without noise."""
from __future__ import annotations

from benchmark_scripts import load_benchmark

from celegans_autofocus.core import focus

SMALL = {"per_variant": 2, "seed": 7, "range_steps": 40, "step_every": 8, "agree_steps": 8.0}  # 11 planes


def test_noise_draws_reproduce_the_run_and_vary_only_the_camera_noise():
    bench = load_benchmark("labelling")
    only = {"default/crop500_1"}
    [full] = bench.sim_rows(**SMALL, only=only)
    rows = {r["stack"].split(" ", 1)[1]: r for r in bench.noise_draw_rows(**SMALL, only=only, draws=2)}
    assert list(rows) == ["as drawn", "noise-free", "noise 0", "noise 1"]
    assert rows["as drawn"]["curves"] == full["curves"] and rows["as drawn"]["truth"] == full["truth"]
    raw = "brenner"  # white noise adds 2 sigma^2 to the gradient energy at every plane
    for draw in ("as drawn", "noise 0", "noise 1"):
        assert all(rows[draw]["curves"][raw][z] > v for z, v in rows["noise-free"]["curves"][raw].items())
    assert rows["noise 0"]["curves"] != rows["noise 1"]["curves"] != rows["as drawn"]["curves"]
    again = bench.noise_draw_rows(**SMALL, only=only, draws=1)
    assert again[1]["curves"] == rows["noise-free"]["curves"] and again[2]["curves"] == rows["noise 0"]["curves"]
    assert all(focus.AUTO in r["picks"] for r in rows.values())
