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

"""What the ament lint tests check: the package, its tests, launch files, benchmarks and setup.py."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_PATHS = [str(ROOT / p) for p in ("celegans_autofocus", "test", "launch", "benchmarks", "setup.py")]


def importable(module: str) -> bool:
    """Whether ``module`` can be imported here (the linters come from apt on ROS, requirements-lint.txt else)."""
    return importlib.util.find_spec(module) is not None
