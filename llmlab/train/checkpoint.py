"""Checkpoints that survive crashes, and everything a run needs to continue exactly.

A checkpoint is one `torch.save`d dict of plain types and tensors:

    model, optimizer, scaler   state_dicts
    step                       optimizer steps completed
    config                     {"model": ..., "model_class": "GPT", "train": ..., "data": ...} as plain dicts
    data                       {"objective": "NextToken", "state": its state_dict (the "position" in
                               the data: a generator's state), "world_size": processes that wrote it}
    rng                        torch (CPU, CUDA) and Python RNG states, one entry per process
    extra                      e.g. the tokenizer, so `llmlab sample` needs nothing else

`model_from_checkpoint` builds the model class the checkpoint names (llmlab.models.MODELS) and
loads its weights. Checkpoints written before the class name was stored hold a GPT, and
`data` was then the generator's state itself: both still load.

Writes are atomic: the dict goes to a temporary file in the same folder, is flushed to
disk, then renamed over the old file (`os.replace` is atomic on POSIX and Windows). A crash
or a SIGKILL mid-write leaves the previous checkpoint untouched. Loading uses
`torch.load(weights_only=True)`, which refuses to run arbitrary pickled code.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import torch
from torch import nn

from llmlab.models import build_model


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write `state` to `path` atomically (all or nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them "the" checkpoint
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dfd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint` (weights_only: no code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint={str(path)!r}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, not a checkpoint, or pickled objects we refuse
        raise ValueError(f"checkpoint={str(path)!r}: could not be read as an llmlab checkpoint ({e})") from e


def rng_state() -> dict:
    """This process's random state: torch CPU, every CUDA device, Python's `random`."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ----------------------------------------------------------------------------- which model, which data position
def model_class(ck: dict) -> str:
    """The model class a checkpoint holds; "GPT" for checkpoints older than the class name."""
    return ck["config"].get("model_class", "GPT")


def model_from_checkpoint(ck: dict) -> nn.Module:
    """The trained model again: its class (by name) built from its config dict, then its weights."""
    model = build_model(ck["config"]["model"], model_class(ck))
    model.load_state_dict(ck["model"])
    return model


def objective_state(ck: dict) -> dict:
    """The objective's state_dict; older checkpoints stored the generator state as `data` itself."""
    data = ck["data"]
    return data["state"] if "state" in data else {"generator": data["generator"]}
