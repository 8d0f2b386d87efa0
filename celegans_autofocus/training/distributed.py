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

"""Data-parallel training through PyTorch's own engine: ``torchrun`` + ``DistributedDataParallel``.

``torchrun --nproc_per_node N -m celegans_autofocus.cli train ...`` (or ``torchrun --nproc_per_node N
$(which celegans-autofocus) train ...``) starts N processes with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
set; :func:`init` joins them into one process group (``nccl`` on CUDA, ``gloo`` on the CPU). Rank 0
writes every file; all ranks read the checkpoint they resume from. On CUDA, BatchNorm is synchronised
across ranks (``SyncBatchNorm``), so N processes train what one process with the same global batch
would; on the CPU (gloo) PyTorch has no SyncBatchNorm and each rank normalises over its own share of
the batch, the one departure (none for LayerNorm models such as convnextv2).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Return True in a process started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device_kind: str) -> DistContext | None:
    """Join the process group of a torchrun launch (None when not launched by one)."""
    if not launched():
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device_kind == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    return ctx


def close(ctx: DistContext | None) -> None:
    if ctx is not None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def wrap(model: torch.nn.Module, ctx: DistContext | None, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel`` (SyncBatchNorm on CUDA) under torchrun; the model itself otherwise."""
    if ctx is None:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def all_sum(values: list[float], ctx: DistContext | None) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (float64)."""
    if ctx is None:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def all_gather(obj, ctx: DistContext | None) -> list:
    """Every rank's ``obj``, in rank order."""
    if ctx is None:
        return [obj]
    import torch.distributed as dist

    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext | None) -> None:
    if ctx is not None:
        import torch.distributed as dist

        dist.barrier()
