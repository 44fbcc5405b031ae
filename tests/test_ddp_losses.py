"""Two DDP ranks (gloo, this machine only) train a DANN with the domain loss on control wells,
where one rank's batch holds no control well and the other's does: the step that used to fail
("Parameter indices which did not receive grad for rank 1") must run, and both ranks must hold
identical parameters after it. DistributedDataParallel is built as Ray Train's prepare_model
builds it (find_unused_parameters=False). No Ray: torch.distributed directly."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, adversary: str, queue) -> None:
    from rxsweep.models import DANN, create_backbone
    from rxsweep.training.config import TrainConfig
    from rxsweep.training.recipe import train_step

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        cfg = TrainConfig(domain_label="plate", adversary=adversary, domain_sites="controls", domain_dropout=0.0)
        torch.manual_seed(0)  # the same initial weights on both ranks
        model = torch.nn.parallel.DistributedDataParallel(
            DANN(create_backbone("cnn-small", 6), n_classes=12, domain_label="plate", n_domains=3,
                 domain_width=16, domain_dropout=0.0, adversary=adversary), find_unused_parameters=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        generator = torch.Generator().manual_seed(100 + rank)
        seen = []
        for step in range(3):
            # rank 1's first two batches hold no control well (labels 0-9 are treatments); rank
            # 0's always do (10, 11 are controls)
            labels = torch.tensor([0, 1, 2, 3]) if rank == 1 and step < 2 else torch.tensor([0, 10, 11, 5])
            x = torch.randn(4, 6, 16, 16, generator=generator)
            out = train_step(model, optimizer, scheduler, x, labels, torch.tensor([0, 1, 2, 0]), cfg,
                             torch.device("cpu"), is_treatment=(labels < 10).long())
            seen.append(out.domain_seen.item())
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        gathered = [torch.zeros_like(flat) for _ in range(2)]
        dist.all_gather(gathered, flat)
        queue.put((rank, seen, float((gathered[0] - gathered[1]).abs().max()), float(flat.abs().sum())))
    except Exception as e:  # reported to the test, which names it
        queue.put((rank, "error", f"{type(e).__name__}: {e}", None))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("adversary", ["dann", "cdann"])
def test_ddp_trains_when_one_rank_sees_no_control_well(adversary):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, adversary, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        rank, *rest = queue.get(timeout=90)
        results[rank] = rest
    for p in procs:
        p.join(timeout=30)
    for rank, rest in results.items():
        assert rest[0] != "error", f"rank {rank}: {rest[1]}"
    assert results[0][0] == [2.0, 2.0, 2.0] and results[1][0] == [0.0, 0.0, 2.0]  # the crafted order
    assert results[0][1] == 0.0 and results[1][1] == 0.0  # identical parameters on both ranks
    assert results[0][2] == results[1][2] > 0
