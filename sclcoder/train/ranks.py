"""Training under a launcher: which process speaks for the run, the process group on CPU, and blocks the main
process runs before the others (torchrun, accelerate launch and the deepspeed launcher start the ranks; TRL,
Accelerate and DeepSpeed distribute the work)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from sclcoder import defaults
from sclcoder.device import has_gpu
from sclcoder.recipe import Recipe


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def init_process_group(recipe: Recipe) -> None:
    """Several processes (torchrun, accelerate launch, the deepspeed launcher) on CPU: the process group must
    exist on gloo before anything else asks for one. Under DeepSpeed, DeepSpeed must create it or ranks
    disagree on the batch size; and Accelerate, asked first, would see one process per rank. On GPUs, and
    for one process without DeepSpeed, the launchers and TRL set everything up themselves."""
    if has_gpu():
        return
    if recipe.deepspeed and "RANK" not in os.environ:
        # one process without a launcher: DeepSpeed would look for MPI to learn its rank; tell it instead
        from sclcoder.endpoints import free_port

        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR=defaults.LOOPBACK)
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    elif int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if recipe.deepspeed:
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """The main process runs the block first; the other ranks wait for it, then run it too."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        from accelerate import PartialState  # on GPUs it sets the process group up itself

        with PartialState().main_process_first():
            yield
        return
    if not is_main_process():
        dist.barrier()
    yield
    if is_main_process():
        dist.barrier()
