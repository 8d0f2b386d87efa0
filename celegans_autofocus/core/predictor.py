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

"""ONNX Runtime focus predictor: a grayscale frame -> signed motor steps to best focus.

The model file carries its own preprocessing and units in ``metadata_props`` under the key
``celegans_autofocus`` (JSON, schema 1; see docs/architecture.md). The frame goes through
:func:`celegans_autofocus.core.images.preprocess` with the model's :class:`PreprocessSpec`,
so a model is never served with a transform other than the one it was trained with.
``offset_steps = raw_output * output_scale``; positive means move the motor to larger z.
A model whose metadata names a ``sigma_output`` (the Gaussian NLL head) has a second output, the predicted
standard deviation of the offset in the same units (``sigma_steps = raw_sigma * |output_scale|``); models
without it serve as before and report no sigma.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .images import ImageError, PreprocessSpec, check_view, preprocess
from .package_files import package_file

METADATA_KEY = "celegans_autofocus"
SCHEMA_VERSION = 1
DEFAULT_MODEL_NAME = "default.onnx"
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class ModelError(ValueError):
    """A model file that cannot be served: missing, corrupt, without our metadata or of the wrong shape."""


class NonFiniteOutputError(ArithmeticError):
    """The model returned NaN or Inf: the prediction must not drive the motor."""


def is_onnx_model(path: Path | str) -> bool:
    """Whether ``path`` names an ONNX model file (an export), not a training checkpoint: the ``.onnx`` suffix."""
    return str(path).lower().endswith(".onnx")


def default_model_path() -> Path:
    """Return the bundled ``models/default.onnx`` (:func:`core.package_files.package_file`)."""
    path, looked_in = package_file("models", DEFAULT_MODEL_NAME)
    if path is None:
        raise ModelError("no bundled model found; looked in: " + ", ".join(str(p) for p in looked_in))
    return path


def resolve_providers(providers: None | str | Sequence[str] = "auto") -> list[str]:
    """``None``/``"auto"``: CUDA when this onnxruntime has it, else CPU. A list passes through (CPU appended)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers is None or providers == "auto":
        return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]
    if isinstance(providers, str):
        providers = [providers]
    missing = [p for p in providers if p not in available]
    if missing:
        raise ValueError(f"onnxruntime providers {missing} are not available; available: {available}")
    return list(providers) + ([] if CPU_PROVIDER in providers else [CPU_PROVIDER])


def parse_metadata(text: str | None, path: Path) -> dict:
    """Validate the ``celegans_autofocus`` metadata JSON; :class:`ModelError` naming ``path`` if it is unusable."""
    if text is None:
        raise ModelError(f"{path}: no '{METADATA_KEY}' entry in the ONNX metadata_props "
                         "(not exported by celegans-autofocus export?)")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: metadata '{METADATA_KEY}' is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: metadata '{METADATA_KEY}' must be a JSON object")
    if meta.get("schema") != SCHEMA_VERSION:
        raise ModelError(f"{path}: metadata schema {meta.get('schema')!r} is not supported (expected {SCHEMA_VERSION})")
    if meta.get("output") != "offset_steps":
        raise ModelError(f"{path}: metadata output {meta.get('output')!r} is not 'offset_steps'")
    for key in ("output_scale", "step_um"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ModelError(f"{path}: metadata {key}={value!r} must be a finite number")
    if meta["step_um"] <= 0 or meta["output_scale"] == 0:
        raise ModelError(f"{path}: metadata step_um must be > 0 and output_scale != 0, "
                         f"got {meta['step_um']} and {meta['output_scale']}")
    sigma = meta.get("sigma_output")
    if sigma is not None and (not isinstance(sigma, str) or not sigma or sigma == meta["output"]):
        raise ModelError(f"{path}: metadata sigma_output={sigma!r} must name the model's second output")
    try:
        PreprocessSpec.from_dict(meta.get("preprocess"))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: metadata preprocess {meta.get('preprocess')!r} is invalid: {exc}") from None
    return meta


def input_view(requested: str, metadata: dict) -> str:
    """Return ``full`` or ``crop``.

    As requested, or for ``auto`` the model's ``input_view`` metadata (crop models get the detector's
    crop; full-frame and mixed models the camera frame).
    """
    if requested != "auto":
        return requested
    return "crop" if metadata.get("input_view") == "crop" else "full"


class FocusPredictor:
    """An ONNX model with our metadata, ready to turn grayscale frames into offsets in steps."""

    def __init__(self, model_path: str | Path, providers: None | str | Sequence[str] = "auto",
                 intra_op_threads: int = 0) -> None:
        import onnxruntime as ort

        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        if intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0 (0 = onnxruntime default), got {intra_op_threads}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options,
                                                providers=resolve_providers(providers))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise ModelError(f"{self.path}: cannot load ONNX model: {str(exc).strip().splitlines()[0]}") from None
        custom = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict = parse_metadata(custom.get(METADATA_KEY), self.path)
        self.spec = PreprocessSpec.from_dict(self.metadata["preprocess"])
        self.output_scale = float(self.metadata["output_scale"])
        self.step_um = float(self.metadata["step_um"])
        self._check_signature()

    @property
    def providers(self) -> list[str]:
        """Return the execution providers the session actually uses, in priority order."""
        return self.session.get_providers()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def has_sigma(self) -> bool:
        """Return True when the model predicts its own uncertainty (metadata ``sigma_output``)."""
        return self._sigma_name is not None

    def _check_signature(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self._sigma_name = self.metadata.get("sigma_output")
        n_out = 1 if self._sigma_name is None else 2
        if len(inputs) != 1 or len(outputs) != n_out:
            why = " (metadata sigma_output)" if n_out == 2 else ""
            raise ModelError(f"{self.path}: expected 1 input and {n_out} output(s){why}, got {len(inputs)} and "
                             f"{len(outputs)}")
        by_name = {o.name: o for o in outputs}
        if self._sigma_name is not None and self._sigma_name not in by_name:
            raise ModelError(f"{self.path}: metadata sigma_output {self._sigma_name!r} is not an output of the model "
                             f"({sorted(by_name)})")
        inp = inputs[0]
        out = next(o for o in outputs if o.name != self._sigma_name)
        side = self.spec.input_px
        shape = list(inp.shape)
        ok = (inp.type == "tensor(float)" and len(shape) == 4 and shape[1] in (1, None, "")
              and (shape[0] == 1 or not isinstance(shape[0], int))
              and all(d == side or not isinstance(d, int) for d in shape[2:]))
        if not ok:
            raise ModelError(f"{self.path}: input {inp.name!r} is {inp.type} {shape}; expected float32 "
                             f"(N or 1, 1, {side}, {side}) as metadata preprocess.input_px={side} says")
        for o in outputs:
            if o.type != "tensor(float)" or len(o.shape) not in (1, 2):
                raise ModelError(f"{self.path}: output {o.name!r} is {o.type} {o.shape}; expected float32 (N, 1)")
        self._input_name, self._output_name = inp.name, out.name
        self._batch_is_dynamic = not isinstance(shape[0], int)

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(offsets, sigmas or None) in steps for a preprocessed batch; non-finite values raise."""
        names = [self._output_name] + ([self._sigma_name] if self._sigma_name else [])
        outs = self.session.run(names, {self._input_name: batch})
        values = []
        for name, raw in zip(names, outs):
            raw = np.asarray(raw, dtype=np.float64).reshape(len(batch), -1)
            if raw.shape[1] != 1:
                raise ModelError(f"{self.path}: output {name!r} has {raw.shape[1]} values per image; expected 1")
            values.append(raw[:, 0])
        offsets = values[0] * self.output_scale
        if not np.isfinite(offsets).all():
            raise NonFiniteOutputError(f"{self.path}: model returned a non-finite offset {offsets.tolist()}")
        if self._sigma_name is None:
            return offsets, None
        sigmas = values[1] * abs(self.output_scale)
        if not (np.isfinite(sigmas).all() and (sigmas >= 0).all()):
            raise NonFiniteOutputError(f"{self.path}: model returned an invalid sigma {sigmas.tolist()}")
        return offsets, sigmas

    def warm_up(self) -> float:
        """Run once on a blank input; returns its time in ms.

        So the first real frame does not pay for the session's lazy allocations. The output is not checked
        (a model may be garbage on blanks).
        """
        side = self.spec.input_px
        started = time.perf_counter()
        try:
            self.session.run([self._output_name], {self._input_name: np.zeros((1, 1, side, side), np.float32)})
        except Exception as exc:  # onnxruntime's own error types (e.g. a provider that fails on first use)
            raise ModelError(f"{self.path}: the first run failed: {str(exc).strip().splitlines()[0]}") from None
        return (time.perf_counter() - started) * 1e3

    def preprocess(self, gray: np.ndarray) -> np.ndarray:
        """Return the model input (1, input_px, input_px) float32 for one grayscale frame (ImageError: no view)."""
        check_view(gray, self.spec.input_px)
        return preprocess(gray, self.spec)[None]

    def predict(self, gray: np.ndarray) -> float:
        """Signed steps to best focus for one 2-D grayscale frame (any size, any dtype)."""
        return self.predict_with_sigma(gray)[0]

    def predict_with_sigma(self, gray: np.ndarray) -> tuple[float, float | None]:
        """(signed steps to best focus, predicted sigma in steps or None without a sigma output) for one frame."""
        offsets, sigmas = self._run(self.preprocess(gray)[None])
        return float(offsets[0]), None if sigmas is None else float(sigmas[0])

    def predict_batch(self, grays: Sequence[np.ndarray]) -> np.ndarray:
        """Signed steps to best focus for each frame, float64 (N,). One run per frame if the batch is fixed at 1."""
        return self.predict_batch_with_sigma(grays)[0]

    def predict_batch_with_sigma(self, grays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """(offsets, sigmas or None) in steps for each frame, float64 (N,)."""
        side = self.spec.input_px
        return self.predict_inputs(np.stack([self.preprocess(g)[0] for g in grays]) if len(grays)
                                   else np.zeros((0, side, side), np.float32))

    def predict_inputs(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Return (offsets, sigmas or None) in steps for model inputs already preprocessed by ``spec``, (N, px, px).

        For inputs rendered once and read by several models of one ``spec`` (benchmarks' held-out sets); a frame
        goes through :meth:`predict_batch_with_sigma`.
        """
        side = self.spec.input_px
        if inputs.ndim != 3 or inputs.shape[1:] != (side, side):
            raise ImageError(f"model inputs must be (N, {side}, {side}), got {inputs.shape}")
        if len(inputs) == 0:
            return np.zeros(0), (np.zeros(0) if self.has_sigma else None)
        batch = inputs.astype(np.float32, copy=False)[:, None]
        if self._batch_is_dynamic:
            return self._run(batch)
        runs = [self._run(batch[i:i + 1]) for i in range(len(batch))]
        offsets = np.concatenate([r[0] for r in runs])
        return offsets, (np.concatenate([r[1] for r in runs]) if self.has_sigma else None)
