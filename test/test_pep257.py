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

"""ament_pep257 on the Python sources.

Convention: ament's (pydocstyle's checks less D100-D107, D203, D212, D404) and D213 also ignored, so a
multi-line docstring's summary may start on the opening line (the house style) or the next one.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from lint_paths import importable, PYTHON_PATHS

pytestmark = pytest.mark.skipif(not importable("ament_pep257"),
                                reason="no ament_pep257 (apt: ros-<distro>-ament-pep257; pip: requirements-lint.txt)")


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    """Run in a fresh interpreter, as test_flake8 does."""
    code = "import sys\nfrom ament_pep257.main import main\nsys.exit(main(argv=sys.argv[1:]))\n"
    proc = subprocess.run([sys.executable, "-c", code, *PYTHON_PATHS, "--add-ignore", "D213"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"code style errors / warnings:\n{proc.stdout[-20000:]}{proc.stderr[-3000:]}"
