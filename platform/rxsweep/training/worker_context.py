"""Where the per-worker loop (rxsweep.training.loop) runs: what it asks of its surroundings.

Two places run the same loop:

- :class:`TrainWorkerContext`: a rank of a Ray Train worker group (TorchTrainer). Every
  multi-worker run, and ``rxsweep train``. Ray Train starts a controller and one process a
  worker, restarts the group from the last checkpoint after a worker dies, and persists the
  checkpoints into the run folder.
- :class:`InProcessContext`: the one worker of a single-worker sweep trial, inside the Tune
  trial's own process. A TorchTrainer there costs ~8 s a trial before the first step (a controller
  and a worker process, each importing torch and Ray Train; bench/RESULTS.md, sweep_overhead),
  which with ASHA's one- and two-epoch trials was about half of a CPU sweep. Here the context does
  what Ray Train did: it writes each epoch's checkpoint into the run folder (the same
  ``checkpoint_epochNNNN`` folders, the last ``keep_checkpoints`` of them) and metrics.jsonl,
  then reports the metrics to Tune; a trial that Tune starts again (a retry after its process
  died, a resumed sweep) resumes from the latest checkpoint in its run folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from rxsweep import mirror
from rxsweep.training import run_files

#: A checkpoint folder being copied into the run folder; renamed when complete, so any
#: checkpoint_epochNNNN folder is whole (a process killed mid-copy leaves only this).
PARTIAL_PREFIX = ".partial-"


class TrainWorkerContext:
    """One rank of a Ray Train worker group."""

    def __init__(self) -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()

    @property
    def device(self) -> torch.device:
        import ray.train.torch

        return ray.train.torch.get_device()

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[Optional[str]]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as d:
            yield d

    def dataset(self, names: list[str]):
        import ray.train

        return ray.train.get_dataset_shard(names[self.rank] if len(names) > 1 else names[0])

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)  # moves to the device; DDP when world > 1

    def report(self, metrics: dict, checkpoint_dir: Optional[str], epoch: int) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=run_files.checkpoint_dir_name(epoch))


class InProcessContext:
    """The single worker of a run, in the calling process (a Tune trial's).

    ``datasets``: {name: Ray Dataset} as rxsweep.training.trainer.build_datasets returns them.
    ``report``: where the metrics go after the checkpoint and metrics.jsonl are written
    (``ray.tune.report`` in a trial).
    """

    rank, world = 0, 1

    def __init__(self, run_dir: str | Path, datasets: dict, keep_checkpoints: int,
                 report: Callable[[dict], None], device: Optional[torch.device] = None) -> None:
        self.run_dir = Path(run_dir)
        self.datasets = datasets
        self.keep = max(1, keep_checkpoints)
        self._report = report
        # In a trial, Ray sets CUDA_VISIBLE_DEVICES to the trial's own GPUs: cuda:0 is the first.
        self.device = device or (torch.device("cuda", 0) if torch.cuda.is_available() and _gpus_assigned()
                                 else torch.device("cpu"))

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[Optional[str]]:
        found = run_files.checkpoints(self.run_dir)
        yield str(found[-1]) if found else None

    def dataset(self, names: list[str]):
        return self.datasets[names[0]].iterator()

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def report(self, metrics: dict, checkpoint_dir: Optional[str], epoch: int) -> None:
        saved = None
        if checkpoint_dir:
            saved = self.run_dir / run_files.checkpoint_dir_name(epoch)
            partial = self.run_dir / f"{PARTIAL_PREFIX}{saved.name}"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(checkpoint_dir, partial)
            if saved.exists():  # an epoch trained again after a crash replaces its checkpoint
                mirror.remove(saved)
            os.replace(partial, saved)
            for old in run_files.checkpoints(self.run_dir)[:-self.keep]:
                mirror.remove(old)  # and at the URI, when run_dir is a staging copy
        run_files.record_epoch(self.run_dir, metrics, saved)
        self._report(metrics)


def _gpus_assigned() -> bool:
    import ray

    return ray.is_initialized() and bool(ray.get_gpu_ids())
