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

"""Fine-tuning settings (torch-free, so the CLI can show them without importing torch)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FinetuneConfig:
    """Fine-tuning settings (defaults: the benchmark's, benchmarks/finetune.md)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    huber_steps: float = 10.0
    nll_beta: float = 0.5
    val_fraction: float = 0.25
    target: str = "auto"
    seed: int = 0
    include_flagged: bool = False

    def validate(self) -> None:
        checks = [(self.epochs >= 1, "epochs must be >= 1"), (self.batch_size >= 2, "batch_size must be >= 2"),
                  (self.lr > 0, "lr must be > 0"), (self.weight_decay >= 0, "weight_decay must be >= 0"),
                  (self.huber_steps > 0, "huber_steps must be > 0"),
                  (0 <= self.nll_beta <= 1, "nll_beta must be in [0, 1]"),
                  (0 < self.val_fraction < 1, "val_fraction must be in (0, 1)"),
                  (self.target in ("auto", "labels", "truth"), "target must be auto, labels or truth")]
        for ok, message in checks:
            if not ok:
                name = message.split()[0]
                raise ValueError(f"{message} (got {name}={getattr(self, name)!r})")
