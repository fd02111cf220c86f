"""torchrun / DistributedDataParallel set-up.

Launch with ``torchrun --nproc_per_node N -m bench run ...``: torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables, and :func:`setup` joins the process
group (NCCL on CUDA, gloo on CPU).

Batch and learning rate: ``data.speakers_per_batch * data.utts_per_speaker`` is the *global* batch,
split evenly over ranks by the loader, so the effective batch size and therefore ``optim.lr`` mean
the same thing whatever the number of processes.

Contrastive losses: every rank all-gathers the embeddings and labels of the global batch with the
autograd-aware :func:`torch.distributed.nn.functional.all_gather` and computes the loss on the
whole global batch, as a single process would. Its backward sums the gradient of every rank's
(identical) loss copy into each rank's slice, i.e. ``world_size`` times the true gradient, and
DDP's gradient averaging divides it back, so training equals single-process training on the
same global batch for every loss, SupCon included (the reference computes SupCon per GPU on the
local batch instead; here positives across ranks count). The loss is identical on every rank, so
NaN-step skipping is decided identically everywhere without extra communication.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process' place in the job; ``world_size == 1`` means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device_pref: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when launched by torchrun; pick this rank's device."""
    info = DistInfo()
    if launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1:
        info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    device = pick_device(device_pref, info.local_rank)
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    return info, device


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto``: this rank's GPU when there is one, else the CPU."""
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(pref)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``module`` when distributed (parameters broadcast from rank 0)."""
    if not info.enabled or not any(p.requires_grad for p in module.parameters()):
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(module, "module", module)
    return getattr(inner, "_orig_mod", inner)  # torch.compile wrapper


def gather_batch(emb: torch.Tensor, labels: torch.Tensor, info: DistInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """[b, V, D], [b] on each rank -> [B, V, D], [B] of the global batch, rank order; grads flow back."""
    if not info.enabled:
        return emb, labels
    from torch.distributed.nn.functional import all_gather

    embs = all_gather(emb.contiguous())
    labs = [torch.empty_like(labels) for _ in range(info.world_size)]
    dist.all_gather(labs, labels.contiguous())
    return torch.cat(list(embs), 0), torch.cat(labs, 0)


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (decisions, checkpoints read by rank 0)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
