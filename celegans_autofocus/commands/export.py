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

"""``celegans-autofocus export CHECKPOINT OUT.onnx``: ONNX export with metadata and a parity check."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .torch_setup import torch_ready

HELP = "export a training checkpoint to ONNX (opset 18, dynamic batch, metadata, torch parity check)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("files")
    io.add_argument("checkpoint", type=Path, help="checkpoint written by train (best.pt or last.pt)")
    io.add_argument("output", type=Path, metavar="OUT.onnx", help="ONNX file to write (replaced atomically)")
    check = parser.add_argument_group("checks")
    check.add_argument("--arch", help="fail unless the checkpoint is of this timm architecture")


def run(args: argparse.Namespace) -> int:
    if not torch_ready("export"):
        return 2
    from ..training.checkpoint import CheckpointError
    from ..training.export import PARITY_TOL_STEPS, ExportError, export_checkpoint
    from ..training.models import ArchError

    try:
        result = export_checkpoint(args.checkpoint, args.output, arch=args.arch)
    except (CheckpointError, ExportError, ArchError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result["metadata"], indent=2))
    print(f"wrote {result['onnx']} ({result['size_mb']:.1f} MB); parity vs torch: max abs diff "
          f"{result['parity_max_abs_diff_steps']:.2e} steps (limit {PARITY_TOL_STEPS:g})")
    return 0
