"""Two processes that train as one (gloo on the CPU, as torchrun would start them), for the DDP tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, free_port


def start_ranks(worker: Path, args_of_rank, world_size: int = 2) -> list[subprocess.Popen]:
    """Start `worker` once per rank with torchrun's environment (RANK, WORLD_SIZE, MASTER_*)."""
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, str(worker), *map(str, args_of_rank(rank))]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def wait_ranks(procs: list[subprocess.Popen], timeout: float = 240) -> None:
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]
