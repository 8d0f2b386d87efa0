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

"""An exported ONNX model of a conv-BatchNorm architecture back into its torch model.

The architectures: ``plain7`` (e.g. the bundled ``models/default.onnx``) and ``resnet18_half``.

The export folds each BatchNorm into its convolution (a weight and a bias per Conv node), so the import puts
the folded weights into the convolutions and makes each BatchNorm the identity in eval mode (weight 1, bias
= the folded bias, running mean 0, running variance ``1 - eps``). The graph's Conv nodes are walked in order
against the torch model's convolutions in module order (each followed by its BatchNorm; both orders follow the
forward pass), each checked for shape, stride and padding, then the Gemm of the head. The result computes the
ONNX model's function (test/test_finetune.py checks it against ONNX Runtime). A model with the Gaussian NLL
head (metadata ``sigma_output``) comes back with both raw outputs, mean and log-variance, as trained.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.predictor import METADATA_KEY, parse_metadata
from .config import head_outputs
from .models import CUSTOM_ARCHS, create_model


class OnnxImportError(ValueError):
    """An ONNX file that is not an exported model of an importable architecture (names the file and the misfit)."""


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def read_metadata(path: Path) -> dict:
    """Return the model's ``celegans_autofocus`` metadata (:func:`core.predictor.parse_metadata` rules)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors come in several types
        raise OnnxImportError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    try:
        return parse_metadata(props.get(METADATA_KEY), path)
    except ValueError as exc:
        raise OnnxImportError(str(exc)) from None


def export_outputs(meta: dict) -> int:
    """Return the raw outputs of an export with metadata ``meta``: 2 with the Gaussian NLL head (mean, log-variance)."""
    return head_outputs(bool(meta.get("sigma_output")))


def _conv_norm_pairs(model: torch.nn.Module) -> list[tuple[torch.nn.Conv2d, torch.nn.BatchNorm2d]]:
    """Each convolution with the BatchNorm that follows it in module order."""
    pairs, conv = [], None
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            conv = module
        elif isinstance(module, torch.nn.BatchNorm2d) and conv is not None:
            pairs.append((conv, module))
            conv = None
    return pairs


def model_from_onnx(path: Path | str) -> tuple[torch.nn.Module, dict]:
    """(torch model in eval mode with the ONNX model's weights, its metadata); :class:`OnnxImportError` if unfit."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    meta = read_metadata(path)
    arch = meta.get("arch")
    if arch not in CUSTOM_ARCHS:
        raise OnnxImportError(f"{path}: a {arch!r} model; only {', '.join(CUSTOM_ARCHS)} models can be imported "
                              "from ONNX (fine-tune other architectures from their training checkpoint)")
    graph = onnx.load(str(path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    outputs = export_outputs(meta)
    model = create_model(arch, outputs=outputs)
    pairs = _conv_norm_pairs(model)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    if len(convs) != len(pairs) or len(gemms) != 1:
        raise OnnxImportError(f"{path}: {len(convs)} Conv and {len(gemms)} Gemm nodes; {arch} has "
                              f"{len(pairs)} and 1")

    def initializer(node, i: int) -> np.ndarray:
        if len(node.input) <= i or node.input[i] not in weights:
            raise OnnxImportError(f"{path}: {node.op_type} node {node.name!r} input {i} is not a stored weight")
        return weights[node.input[i]]

    with torch.no_grad():
        for node, (conv, norm) in zip(convs, pairs):
            a = _attrs(node)
            w, b = initializer(node, 1), initializer(node, 2)
            fits = (w.shape == tuple(conv.weight.shape) and b.shape == (conv.out_channels,)
                    and list(a.get("strides", [1, 1])) == list(conv.stride)
                    and list(a.get("pads", [0, 0, 0, 0])) == list(conv.padding) * 2
                    and list(a.get("dilations", [1, 1])) == [1, 1] and a.get("group", 1) == 1)
            if not fits:
                raise OnnxImportError(f"{path}: Conv {node.name!r} (weight {w.shape}, {a}) does not fit {arch}'s "
                                      f"{conv}")
            conv.weight.copy_(torch.tensor(w))
            norm.weight.fill_(1.0)
            norm.bias.copy_(torch.tensor(b))
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)
        a = _attrs(gemms[0])
        w, b = initializer(gemms[0], 1), initializer(gemms[0], 2)
        w = w if a.get("transB", 0) else w.T
        if w.shape != tuple(head.weight.shape) or b.size != outputs or a.get("transA", 0) \
                or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise OnnxImportError(f"{path}: Gemm (weight {w.shape}, {a}) does not fit {arch}'s head {head}")
        head.weight.copy_(torch.tensor(w))
        head.bias.copy_(torch.tensor(b.reshape(outputs)))
    return model.eval(), meta
