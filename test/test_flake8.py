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

import pytest

from lint_paths import importable, PYTHON_PATHS, ROOT

pytestmark = pytest.mark.skipif(not importable("ament_flake8"),
                                reason="no ament_flake8 (apt: ros-<distro>-ament-flake8; pip: requirements-lint.txt)")


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8(monkeypatch, tmp_path):
    from ament_flake8.main import main_with_errors

    monkeypatch.chdir(tmp_path)  # ament_flake8 walks the working directory for folders to exclude
    rc, errors = main_with_errors(argv=["--config", str(ROOT / "setup.cfg"), *PYTHON_PATHS])
    assert rc == 0, f"{len(errors)} code style errors / warnings:\n" + "\n".join(errors)
