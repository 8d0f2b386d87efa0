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

"""ament_flake8 on the Python sources, with the project's settings (setup.cfg [flake8]: 120 columns)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from lint_paths import importable, PYTHON_PATHS, ROOT

pytestmark = pytest.mark.skipif(not importable("ament_flake8"),
                                reason="no ament_flake8 (apt: ros-<distro>-ament-flake8; pip: requirements-lint.txt)")


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8(tmp_path):
    """Run ament_flake8 in a fresh interpreter.

    flake8 forks a process pool, and forks of this test process (rclpy's and torch's threads running)
    segfaulted in the pool's workers.
    """
    code = ("import sys\n"
            "from ament_flake8.main import main_with_errors\n"
            "rc, errors = main_with_errors(argv=sys.argv[1:])\n"
            "print('\\n'.join(errors))\n"
            "sys.exit(rc)\n")
    # cwd: ament_flake8 walks the working directory for folders to exclude
    proc = subprocess.run([sys.executable, "-c", code, "--config", str(ROOT / "setup.cfg"), *PYTHON_PATHS],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"code style errors / warnings:\n{proc.stdout[-20000:]}{proc.stderr[-3000:]}"
