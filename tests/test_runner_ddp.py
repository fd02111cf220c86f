"""DDP: two gloo processes on CPU train exactly like one process on the same global batch."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from bench.runner import ddp, experiment
from bench.runner.train import train
from tests.runner_helpers import ensure_metrics, fake_loader, make_corpus, register_probe_backbone, tiny_config


def _config(loss: str):
    name = register_probe_backbone()
    sets = {
        "model.backbone": name,
        "train.steps_per_epoch": 3,
        "train.epochs": 2,
        "train.validate_every": 0,
        "eval.untrained": False,
        "optim.optimizer": "sgd",
        "optim.momentum": 0.9,
        "optim.lr": 0.1,
    }
    cfg = tiny_config(**sets)
    cfg.model.params = {}
    return experiment.run_config(cfg, loss, 0)


def _params(result) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for m in (result.model, result.loss) for p in m.parameters()])


def _worker(rank: int, world: int, init: str, root: str, loss: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        corpus = make_corpus(Path(root))
        res = train(_config(loss), corpus, None, info=ddp.DistInfo(rank, world, 0), loader_fn=fake_loader)
        torch.save(_params(res), f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


# aam decomposes over the batch; supcon does not, so it also checks that the all-gather of the
# global batch (not a per-rank local loss) is what the gradients follow; ge2e's centroids span the
# global batch and its learnable scale/bias are loss parameters that DDP must average.
@pytest.mark.slow
@pytest.mark.parametrize("loss", ["aam", "supcon", "ge2e"])
def test_two_gloo_processes_equal_single_process(tmp_path, loss):
    ensure_metrics()
    root = tmp_path / "cn1"
    corpus = make_corpus(root)
    single = _params(train(_config(loss), corpus, None, loader_fn=fake_loader))
    ctx = mp.get_context("fork")  # fork: the children reuse this process' torch import
    init = f"file://{tmp_path / 'rdzv'}"
    out = str(tmp_path / "params")
    procs = [ctx.Process(target=_worker, args=(r, 2, init, str(root), loss, out)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    p0, p1 = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    assert torch.equal(p0, p1)  # DDP keeps replicas identical
    from bench.runner.train import build_components

    init_params = torch.cat([p.detach().flatten() for m in build_components(_config(loss), 6) for p in m.parameters()])
    assert (single - init_params).abs().max() > 1e-3  # training moved the parameters
    assert torch.allclose(p0, single, atol=1e-5, rtol=0), (p0 - single).abs().max()
