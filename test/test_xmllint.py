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

"""ament_xmllint on package.xml: well-formed and valid against the package_format3 schema it names.

xmllint loads the schema from download.ros.org, so this test needs that site; without ament_xmllint (no
wheel on PyPI) or the xmllint program (Debian: libxml2-utils) it is skipped.
"""
from __future__ import annotations

import shutil

import pytest

from lint_paths import importable, ROOT

pytestmark = pytest.mark.skipif(not importable("ament_xmllint") or shutil.which("xmllint") is None,
                                reason="no ament_xmllint (apt: ros-<distro>-ament-xmllint) or no xmllint program")


@pytest.mark.linter
@pytest.mark.xmllint
def test_xmllint():
    from ament_xmllint.main import main

    assert main(argv=[str(ROOT / "package.xml")]) == 0, "found errors"
