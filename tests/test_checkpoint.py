"""Checkpoints: atomic writes, safe loading, RNG round trips, and exact resume of a training
process killed by SIGKILL or stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import random
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llmlab.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- writing and reading
def test_save_and_load_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(6.0).view(2, 3)}, "step": 7, "config": {"lr": 1e-3, "name": "x", "betas": (0.9, 0.95)}}
    save_checkpoint(state, tmp_path / "sub" / "ckpt.pt")
    back = load_checkpoint(tmp_path / "sub" / "ckpt.pt")
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["step"] == 7 and back["config"] == state["config"]
    assert os.listdir(tmp_path / "sub") == ["ckpt.pt"]  # no temporary file left behind


def test_a_crash_mid_write_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def dies_half_way(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a zip file")  # what a process killed mid-write leaves
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_load_refuses_pickled_code_and_garbage(tmp_path):
    from fractions import Fraction

    torch.save({"x": Fraction(1, 3)}, tmp_path / "evil.pt")  # weights_only=True unpickles no arbitrary class
    with pytest.raises(ValueError, match="could not be read as an llmlab checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="cut.pt"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_survives_a_checkpoint(tmp_path):
    torch.manual_seed(3)
    random.seed(3)
    save_checkpoint({"rng": [rng_state()]}, tmp_path / "c.pt")
    expected = (torch.rand(5), random.random())
    torch.manual_seed(99)
    random.seed(99)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"][0])
    got = (torch.rand(5), random.random())
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1]


# ----------------------------------------------------------------------------- killed runs
RUN = '''
import json, sys, time
from pathlib import Path
import torch
from llmlab.models.gpt import GPTConfig
from llmlab.train import TrainConfig, train

def run(out, pause_at=-1):
    torch.set_num_threads(1)  # same reduction order in every process
    g = torch.Generator().manual_seed(0)
    jump = torch.rand(3000, generator=g) < 0.1
    ids = torch.where(jump, torch.randint(0, 37, (3000,), generator=g), torch.ones(3000, dtype=torch.long)).cumsum(0) % 37
    cfg = GPTConfig(vocab_size=37, block_size=12, n_layer=1, n_head=2, n_embd=16, dropout=0.1)
    tc = TrainConfig(max_steps=40, batch_size=4, lr=1e-2, warmup_steps=3, eval_interval=10, eval_iters=2,
                     log_interval=5, progress=False, device="cpu", out_dir=str(out), resume=True)

    def pause(trainer, record):  # hold still at one step until a signal arrives
        if record["step"] == pause_at:
            Path(out, "paused").write_text("")
            while trainer.stop_reason is None:
                time.sleep(0.01)

    return train(cfg, tc, ids[:2400], ids[2400:], callbacks=[pause] if pause_at >= 0 else [], handle_signals=True)

if __name__ == "__main__":
    res = run(sys.argv[1], int(sys.argv[2]))
    print("stopped:", res.stopped)
'''


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    p = tmp_path_factory.mktemp("resume") / "run.py"
    p.write_text(RUN)
    return p


@pytest.fixture(scope="module")
def reference(script, tmp_path_factory):
    n = torch.get_num_threads()
    try:
        return runpy.run_path(str(script))["run"](tmp_path_factory.mktemp("ref"))
    finally:
        torch.set_num_threads(n)


def start_and_pause(script: Path, out: Path, step: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(step)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "paused").exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before step {step}: {proc.communicate()}")
        assert time.monotonic() < deadline, "the run never reached its pause step"
        time.sleep(0.05)
    return proc


def resume_and_compare(script, out, reference):
    n = torch.get_num_threads()
    try:
        res = runpy.run_path(str(script))["run"](out)
    finally:
        torch.set_num_threads(n)
    # the same ops on the same inputs with one thread: bit-identical losses (tolerance 0)
    assert [r["train_loss"] for r in res.history] == [r["train_loss"] for r in reference.history]
    assert res.final_val_loss == reference.final_val_loss
    for (name, p), q in zip(res.model.named_parameters(), reference.model.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0, msg=name)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(40))


def test_sigkill_then_resume_is_exact(script, reference, tmp_path):
    proc = start_and_pause(script, tmp_path, step=25)
    proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: the process just vanishes
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 20  # the last periodic checkpoint
    resume_and_compare(script, tmp_path, reference)


def test_sigterm_checkpoints_where_it_stops_then_resume_is_exact(script, reference, tmp_path):
    proc = start_and_pause(script, tmp_path, step=25)
    proc.send_signal(signal.SIGTERM)  # the handler finishes the step, checkpoints and stops
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped: SIGTERM" in out and "stopped by SIGTERM after step 26" in err
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 26
    resume_and_compare(script, tmp_path, reference)
