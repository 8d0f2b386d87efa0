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

"""Training settings: one flat dataclass of primitive values (stored in every checkpoint).

Defaults are the paper's: MSE loss, Adam at 1e-4, StepLR (step 5 epochs, gamma 0.85),
100 epochs, 500x500 grayscale input, rotations up to 45 degrees, horizontal and vertical flips.
``batch_size`` is the global batch: under DDP each of N processes takes ``batch_size / N``.
``loss: gaussian_nll`` gives the model a second output, the log-variance of its offset (an uncertainty head);
``huber_nll`` too, with the mean trained by the Huber loss alone (the NLL term sees it detached).
``init`` starts from a checkpoint's weights (same arch and outputs), e.g. to train on another data mix, or from
an exported ONNX file's (``training.onnx_import``): its BatchNorms are folded into the convolutions, so such a run,
and a run from its checkpoints, keeps them frozen (``training.checkpoint.FROZEN_NORMS``).
``synthetic_randomize`` is the share of synthetic training views drawn with domain-randomised optics; the others
(and the validation views) have the look ``synthetic_look`` (``core.optics.LOOKS``; a list: each view draws one).
``workers`` only sets how many processes load and render; it does not change the result.
``real_frames`` names a folder of real, sharp worm frames (``core.real_frames``): after every epoch the model's
median answer on the detector's ``real_frames_fov_px`` crop of each source is logged (near 0 is right). A check
to watch, not a metric that trains or chooses anything.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..core.images import NORMALIZE, PreprocessSpec
from ..core.optics import LOOKS
from ..core.predictor import is_onnx_model

LOSSES = ("mse", "huber", "gaussian_nll", "huber_nll")
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("step", "onecycle", "cosine")
#: Settings that may change when a run is resumed (how it runs, not what it learns).
RESUMABLE = ("epochs", "device", "workers", "max_val_samples", "real_frames", "real_frames_fov_px")
#: Settings only the step schedule reads (a recipe may inherit them from a step-schedule base and not use them).
STEP_SCHEDULE_ONLY = ("lr_gamma", "lr_step_epochs")


def head_outputs(sigma: bool) -> int:
    """Return the model's raw outputs: 2 with the Gaussian NLL head (mean, log-variance), else 1."""
    return 2 if sigma else 1


class ConfigError(ValueError):
    """A training setting that cannot be used."""


@dataclass
class TrainConfig:
    arch: str = "convnextv2_tiny"
    pretrained: bool = False
    init: str = ""
    crops: bool = True
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-4
    lr_step_epochs: int = 5
    lr_gamma: float = 0.85
    loss: str = "mse"
    nll_beta: float = 0.0
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "step"
    input_px: int = 500
    normalize: str = "zscore"  # core.images.NORMALIZE
    output_scale: float = 100.0
    rotation_deg: float = 45.0
    hflip: bool = True
    vflip: bool = True
    rot90: bool = False
    val_fraction: float = 0.25
    target: str = "auto"
    seed: int = 0
    device: str = "auto"
    synthetic_train: int = 0
    synthetic_range_steps: float = 200.0
    synthetic_near_fraction: float = 0.0
    synthetic_near_steps: float = 60.0
    synthetic_crop_fraction: float = 0.5
    synthetic_fov_px: list[int] = field(default_factory=lambda: [500])
    synthetic_offsets_per_view: int = 8
    synthetic_refresh: float = 1.0
    synthetic_oversample: float = 1.0
    synthetic_crop_jitter: float = 0.0
    synthetic_randomize: float = 0.0
    synthetic_look: str | list[str] = "default"
    synthetic_val: int = 0
    synthetic_val_seed: int = 999
    synthetic_val_range_steps: float = 200.0
    synthetic_val_fov_px: list[int] = field(default_factory=lambda: [500, 1000])
    max_val_samples: int = 0
    workers: int = 0
    real_frames: str = ""
    real_frames_fov_px: int = 500

    def __post_init__(self) -> None:
        if isinstance(self.synthetic_look, (list, tuple)):  # one spelling per setting: a resume compares them
            looks = list(self.synthetic_look)
            self.synthetic_look = looks[0] if len(looks) == 1 else looks

    @property
    def init_is_export(self) -> bool:
        """Whether ``init`` is an exported ONNX file (not a training checkpoint)."""
        return is_onnx_model(self.init)

    @property
    def looks(self) -> tuple[str, ...]:
        """Return the looks of the synthetic views (``synthetic_look`` as a tuple; empty when it is not valid)."""
        look = self.synthetic_look
        if isinstance(look, str):
            return (look,)
        return tuple(look) if isinstance(look, list) and all(isinstance(n, str) for n in look) else ()

    @property
    def uncertainty(self) -> bool:
        """Return True when the model has the second (log-variance) output: a Gaussian NLL loss."""
        return self.loss in ("gaussian_nll", "huber_nll")

    @property
    def outputs(self) -> int:
        return head_outputs(self.uncertainty)

    @property
    def spec(self) -> PreprocessSpec:
        """Return the preprocessing of this model's input (exported in its metadata)."""
        return PreprocessSpec(input_px=self.input_px, normalize=self.normalize)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown training settings {sorted(unknown)}")
        cfg = cls(**data)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad value."""
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.lr_step_epochs >= 1, "lr_step_epochs must be >= 1"),
            (0 < self.lr_gamma <= 1, "lr_gamma must be in (0, 1]"),
            (self.loss in LOSSES, f"loss must be one of {LOSSES}"),
            (0 <= self.nll_beta <= 1, "nll_beta must be in [0, 1]"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.input_px >= 32, "input_px must be >= 32"),
            (self.normalize in NORMALIZE, f"normalize must be one of {NORMALIZE}"),
            (self.output_scale > 0, "output_scale must be > 0"),
            (0 <= self.rotation_deg <= 180, "rotation_deg must be in [0, 180]"),
            (0 < self.val_fraction <= 1, "val_fraction must be in (0, 1]"),
            (self.target in ("auto", "labels", "truth"), "target must be auto, labels or truth"),
            (self.device in DEVICES, f"device must be one of {DEVICES}"),
            (self.synthetic_train >= 0, "synthetic_train must be >= 0"),
            (self.synthetic_range_steps > 0, "synthetic_range_steps must be > 0"),
            (0 <= self.synthetic_near_fraction <= 1, "synthetic_near_fraction must be in [0, 1]"),
            (0 < self.synthetic_near_steps <= self.synthetic_range_steps,
             "synthetic_near_steps must be in (0, synthetic_range_steps]"),
            (0 <= self.synthetic_crop_fraction <= 1, "synthetic_crop_fraction must be in [0, 1]"),
            (len(self.synthetic_fov_px) > 0 and all(int(f) >= 32 for f in self.synthetic_fov_px),
             "synthetic_fov_px must list crop sizes >= 32 px"),
            (self.synthetic_offsets_per_view >= 1, "synthetic_offsets_per_view must be >= 1"),
            (0 <= self.synthetic_refresh <= 1, "synthetic_refresh must be in [0, 1]"),
            (self.synthetic_oversample >= 1, "synthetic_oversample must be >= 1"),
            (0 <= self.synthetic_crop_jitter <= 0.5, "synthetic_crop_jitter must be in [0, 0.5]"),
            (0 <= self.synthetic_randomize <= 1, "synthetic_randomize must be in [0, 1]"),
            (len(self.looks) > 0 and all(look in LOOKS for look in self.looks),
             f"synthetic_look must be one of {', '.join(LOOKS)} or a list of them"),
            (self.synthetic_val >= 0, "synthetic_val must be >= 0"),
            (self.synthetic_val_range_steps > 0, "synthetic_val_range_steps must be > 0"),
            (len(self.synthetic_val_fov_px) > 0 and all(int(f) >= 32 for f in self.synthetic_val_fov_px),
             "synthetic_val_fov_px must list crop sizes >= 32 px"),
            (self.max_val_samples >= 0, "max_val_samples must be >= 0"),
            (self.workers >= 0, "workers must be >= 0"),
            (self.real_frames_fov_px >= 32, "real_frames_fov_px must be >= 32"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{message} (config: {self._value_for(message)})")

    def _value_for(self, message: str) -> str:
        name = message.split()[0]
        return f"{name}={getattr(self, name)!r}"
