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

"""Tiny REAL ONNX models (built with onnx.helper, opset 18, no torch) for tests everywhere.

Each model takes the model file's input ``image`` float32 (N, 1, input_px, input_px) and returns
``offset_steps`` float32 (N, 1) (docs/architecture.md), and carries valid ``celegans_autofocus``
metadata unless asked not to. Remember that the predictor z-scores every frame, so mean(x) == 0
and mean(x^2) ~= 1.

    from onnx_models import pixel_model
    path = pixel_model(tmp_path / "m.onnx", a=10.0, b=-3.0, row=0, col=0)
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from celegans_autofocus.core.images import PreprocessSpec

OPSET = 18
INPUT = "image"
OUTPUT = "offset_steps"
SIGMA = "offset_sigma"
_SAME = object()


def make_metadata(input_px: int = 32, output_scale: float = 1.0, **overrides) -> dict:
    """Return a valid metadata dict (schema 1); ``overrides`` replace or add keys."""
    meta = {
        "schema": 1,
        "preprocess": PreprocessSpec(input_px=input_px).to_dict(),
        "step_um": 5.0,
        "arch": "test-onnx-helper",
        "output": "offset_steps",
        "output_scale": output_scale,
        "input_view": "mixed",
        "train_data_hash": "none",
        "epochs": 0,
        "val_mae_steps": None,
    }
    meta.update(overrides)
    return meta


def _const(name: str, values, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _save(path: Path | str, nodes: list, initializers: list, input_px: int, dynamic_batch: bool,
          metadata: dict | str | None, input_shape: list | None = None, extra_outputs: tuple[str, ...] = ()) -> Path:
    """Assemble, check and write a model whose final node writes ``OUTPUT`` (and any ``extra_outputs``)."""
    batch = "N" if dynamic_batch else 1
    shape = input_shape if input_shape is not None else [batch, 1, input_px, input_px]
    graph = helper.make_graph(
        nodes, "celegans_autofocus_test",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, 1]) for name in (OUTPUT, *extra_outputs)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    if metadata is not None:
        text = metadata if isinstance(metadata, str) else json.dumps(metadata)
        helper.set_model_props(model, {"celegans_autofocus": text})
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def _affine_tail(source: str, a: float, b: float) -> tuple[list, list]:
    """Nodes turning a (N, 1, 1, 1) tensor ``source`` into OUTPUT = a * source + b, shape (N, 1)."""
    nodes = [
        helper.make_node("Flatten", [source], ["flat"], axis=1),
        helper.make_node("Mul", ["flat", "a"], ["scaled"]),
        helper.make_node("Add", ["scaled", "b"], [OUTPUT]),
    ]
    return nodes, [_const("a", [a]), _const("b", [b])]


def pixel_model(path, a: float = 1.0, b: float = 0.0, row: int = 0, col: int = 0, input_px: int = 32,
                dynamic_batch: bool = True, metadata=_SAME, output_scale: float = 1.0) -> Path:
    """Write a model: offset = (a * x[n, 0, row, col] + b) * output_scale, x being the preprocessed input."""
    nodes = [helper.make_node("Slice", [INPUT, "starts", "ends", "axes"], ["px"])]
    inits = [_const("starts", [row, col], np.int64), _const("ends", [row + 1, col + 1], np.int64),
             _const("axes", [2, 3], np.int64)]
    tail, tail_inits = _affine_tail("px", a, b)
    meta = make_metadata(input_px, output_scale) if metadata is _SAME else metadata
    return _save(path, nodes + tail, inits + tail_inits, input_px, dynamic_batch, meta)


def sigma_model(path, a: float = 1.0, b: float = 0.0, c: float = 1.0, d: float = 0.5, input_px: int = 32,
                dynamic_batch: bool = True, output_scale: float = 1.0, sigma_output: str | None = SIGMA,
                metadata=_SAME) -> Path:
    """Write a model with the uncertainty output (the Gaussian NLL head's export, docs/architecture.md).

    ``offset_steps = (a * p + b) * output_scale`` and ``offset_sigma = (c * |p| + d) * output_scale``, p being the
    preprocessed input's first pixel; the metadata names ``sigma_output`` (None: a model that does not say so).
    """
    nodes = [helper.make_node("Slice", [INPUT, "starts", "ends", "axes"], ["px"]),
             helper.make_node("Abs", ["px"], ["abs_px"]),
             helper.make_node("Flatten", ["abs_px"], ["abs_flat"], axis=1),
             helper.make_node("Mul", ["abs_flat", "c"], ["abs_scaled"]),
             helper.make_node("Add", ["abs_scaled", "d"], [SIGMA])]
    inits = [_const("starts", [0, 0], np.int64), _const("ends", [1, 1], np.int64), _const("axes", [2, 3], np.int64),
             _const("c", [c]), _const("d", [d])]
    tail, tail_inits = _affine_tail("px", a, b)
    extra = {} if sigma_output is None else {"sigma_output": sigma_output}
    meta = make_metadata(input_px, output_scale, **extra) if metadata is _SAME else metadata
    return _save(path, nodes + tail, inits + tail_inits, input_px, dynamic_batch, meta, extra_outputs=(SIGMA,))


def mean_abs_model(path, a: float = 1.0, b: float = 0.0, input_px: int = 32, dynamic_batch: bool = True,
                   metadata=_SAME) -> Path:
    """Write a model: offset = a * mean(|x|) + b over each image (mean(x) itself is 0 after the z-score)."""
    nodes = [helper.make_node("Abs", [INPUT], ["absx"]),
             helper.make_node("ReduceMean", ["absx", "axes"], ["m"], keepdims=1)]
    tail, tail_inits = _affine_tail("m", a, b)
    meta = make_metadata(input_px) if metadata is _SAME else metadata
    return _save(path, nodes + tail, [_const("axes", [1, 2, 3], np.int64)] + tail_inits, input_px,
                 dynamic_batch, meta)


def gradient_energy_model(path, a: float = 1.0, b: float = 0.0, input_px: int = 32,
                          dynamic_batch: bool = True, metadata=_SAME) -> Path:
    """Write a sharpness model (larger for sharper frames): offset = a * mean((x[..., c+1] - x[..., c])^2) + b."""
    nodes = [
        helper.make_node("Slice", [INPUT, "s0", "e0", "ax"], ["left"]),
        helper.make_node("Slice", [INPUT, "s1", "e1", "ax"], ["right"]),
        helper.make_node("Sub", ["right", "left"], ["dx"]),
        helper.make_node("Mul", ["dx", "dx"], ["dx2"]),
        helper.make_node("ReduceMean", ["dx2", "axes"], ["m"], keepdims=1),
    ]
    inits = [_const("s0", [0], np.int64), _const("e0", [input_px - 1], np.int64),
             _const("s1", [1], np.int64), _const("e1", [input_px], np.int64), _const("ax", [3], np.int64),
             _const("axes", [1, 2, 3], np.int64)]
    tail, tail_inits = _affine_tail("m", a, b)
    meta = make_metadata(input_px) if metadata is _SAME else metadata
    return _save(path, nodes + tail, inits + tail_inits, input_px, dynamic_batch, meta)


def constant_model(path, value: float, input_px: int = 32, dynamic_batch: bool = True, metadata=_SAME) -> Path:
    """Write a model: offset = value for every image (NaN or Inf allowed: that is how the non-finite model is made)."""
    nodes = [helper.make_node("ReduceMean", [INPUT, "axes"], ["m"], keepdims=1)]
    tail, tail_inits = _affine_tail("m", 0.0, value)
    meta = make_metadata(input_px) if metadata is _SAME else metadata
    return _save(path, nodes + tail, [_const("axes", [1, 2, 3], np.int64)] + tail_inits, input_px,
                 dynamic_batch, meta)


def nan_model(path, input_px: int = 32) -> Path:
    """Write a valid model with metadata whose output is always NaN."""
    return constant_model(path, math.nan, input_px=input_px)


def no_metadata_model(path, input_px: int = 32) -> Path:
    """Write a valid ONNX model without the ``celegans_autofocus`` metadata entry."""
    return constant_model(path, 1.0, input_px=input_px, metadata=None)


def wrong_input_model(path, model_px: int = 16, metadata_px: int = 32) -> Path:
    """Write a model whose input side (model_px) disagrees with its metadata preprocess.input_px."""
    nodes = [helper.make_node("ReduceMean", [INPUT, "axes"], ["m"], keepdims=1)]
    tail, tail_inits = _affine_tail("m", 0.0, 1.0)
    return _save(path, nodes + tail, [_const("axes", [1, 2, 3], np.int64)] + tail_inits, model_px, True,
                 make_metadata(metadata_px))


def write_corrupt_model(path, valid_model: Path | None = None) -> Path:
    """Write bytes that are not a loadable model: a truncated copy of ``valid_model``, else junk."""
    path = Path(path)
    if valid_model is not None:
        data = Path(valid_model).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"\x08\x07this is not an ONNX protobuf\xff\xfe" * 8)
    return path
