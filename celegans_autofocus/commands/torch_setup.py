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

"""The torch check the training commands share: installed, and its CPU thread count set."""
from __future__ import annotations

import sys


def torch_ready(command: str, threads: int = 0) -> bool:
    """Import torch and apply ``--threads`` (0 = torch's default); print why not and return False otherwise."""
    try:
        import torch
    except ImportError:
        print(f"{command}: torch is not installed; install the extra: pip install 'celegans_autofocus[train]'",
              file=sys.stderr)
        return False
    if threads < 0:
        print(f"{command}: --threads must be >= 0, got {threads}", file=sys.stderr)
        return False
    if threads:
        torch.set_num_threads(threads)
    return True
