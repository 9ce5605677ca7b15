"""Rank and world size from the launcher's environment (mpirun, torchrun or plain variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from fireflyer.haiscale.errors import HaiScaleError


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def dist_env() -> DistEnv:
    """Read RANK/WORLD_SIZE (torchrun) or OMPI_COMM_WORLD_* (mpirun); a single process is rank 0 of 1."""

    def pick(*names: str, default: str | None = None) -> str:
        for n in names:
            if n in os.environ:
                return os.environ[n]
        if default is None:
            raise HaiScaleError(f"none of the environment variables {names} is set")
        return default

    try:
        rank = int(pick("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", default="0"))
        world = int(pick("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", default="1"))
        local_rank = int(pick("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", default=str(rank)))
        local_world = int(pick("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", default=str(world)))
    except ValueError as exc:
        raise HaiScaleError(f"bad rank/world-size environment variable: {exc}") from exc
    if not 0 <= rank < world:
        raise HaiScaleError(f"rank {rank} is outside world size {world}")
    return DistEnv(rank, world, local_rank, local_world)


def export_torch_env() -> DistEnv:
    """Make RANK/WORLD_SIZE/LOCAL_* visible to torch.distributed and hfreduce under mpirun."""
    env = dist_env()
    os.environ.setdefault("RANK", str(env.rank))
    os.environ.setdefault("WORLD_SIZE", str(env.world_size))
    os.environ.setdefault("LOCAL_RANK", str(env.local_rank))
    os.environ.setdefault("LOCAL_WORLD_SIZE", str(env.local_world_size))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    return env
