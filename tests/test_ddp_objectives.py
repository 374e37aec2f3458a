"""DDP on the CPU for every objective: two gloo processes with half the batch each end with the
parameters one process reaches with the whole batch, for next-token prediction (the explicit
`NextToken` objective) and for padded sequence classification.

Started as torchrun starts workers (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), as in
test_ddp.py. For classification the ranks pad their halves to their own longest, so the
micro-batches have other shapes than the single process's: the per-sequence mean still makes
DDP's averaged gradient the whole batch's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from _ddp import start_ranks, wait_ranks
from llmlab.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent



SETUP = '''
import torch
from llmlab.models import ClassifierConfig, GPTConfig, GPT, SequenceClassifier
from llmlab.train import Classification, NextToken, TrainConfig

def sample(n, g):
    """Label 1 when the sequence holds token 3; lengths 2..9, never the pad id 0."""
    out = []
    for i in range(n):
        L = int(torch.randint(2, 10, (1,), generator=g))
        ids = torch.randint(4, 29, (L,), generator=g)
        if i % 2:
            ids[int(torch.randint(0, L, (1,), generator=g))] = 3
        out.append((ids.tolist(), i % 2))
    return out

def setup(kind, batch_size, out_dir=None):
    g = torch.Generator().manual_seed(0)
    if kind == "next_token":
        ids = torch.randint(0, 29, (2000,), generator=g)
        objective = NextToken(ids[:1600], ids[1600:], seed=5)
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=29, block_size=10, n_layer=1, n_head=2, n_embd=12)).double()
    else:
        objective = Classification(sample(120, g), sample(30, g), pad_id=0, seed=5)
        torch.manual_seed(0)
        model = SequenceClassifier(ClassifierConfig(vocab_size=29, block_size=10, n_layer=1, n_head=2, n_embd=12, n_classes=3)).double()
    tc = TrainConfig(max_steps=6, batch_size=batch_size, grad_accum=2, lr=1e-2, warmup_steps=2, eval_interval=3,
                     eval_iters=2, log_interval=2, progress=False, device="cpu", out_dir=out_dir)
    return model, objective, tc
'''

WORKER = '''
import sys, torch
sys.path.insert(0, sys.argv[1])
from setup_run import setup
from llmlab.train import train
model, objective, tc = setup(sys.argv[2], batch_size=3, out_dir=sys.argv[3])
res = train(model, objective, tc)
torch.save({"params": res.model.state_dict(), "losses": [r["train_loss"] for r in res.history], "metrics": res.metrics}, sys.argv[4])
'''


@pytest.mark.parametrize("kind", ["next_token", "classification"])
def test_two_gloo_processes_equal_one_process_for_every_objective(kind, tmp_path):
    (tmp_path / "setup_run.py").write_text(SETUP)
    (tmp_path / "worker.py").write_text(WORKER)
    procs = start_ranks(tmp_path / "worker.py", lambda rank: [tmp_path, kind, tmp_path / "out", tmp_path / f"rank{rank}.pt"])

    # meanwhile, here: one process with the whole batch (2 x 3 = 6 examples per micro-batch), and with half of it
    sys.path.insert(0, str(tmp_path))
    try:
        from setup_run import setup

        if kind == "classification":  # the first step: each rank pads its half to its own longest
            def widths(batch_size, world_size, rank):
                _, objective, _ = setup(kind, batch_size)
                return [b[0].shape[1] for b in objective.batches(batch_size, 2, world_size, rank)]

            whole, h0, h1 = widths(6, 1, 0), widths(3, 2, 0), widths(3, 2, 1)
            assert [max(a, b) for a, b in zip(h0, h1)] == whole and h0 != h1, (whole, h0, h1)
        single = train(*setup(kind, batch_size=6))
        half = train(*setup(kind, batch_size=3))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("setup_run", None)

    wait_ranks(procs)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    for name, p in single.model.state_dict().items():
        torch.testing.assert_close(r0["params"][name], r1["params"][name], atol=0, rtol=0, msg=name)  # DDP keeps replicas identical
        # float64: what differs is the order of summing 6 examples (all-reduce of two halves, and for
        # classification other padded shapes), ~1e-16 relative per step; 6 AdamW steps stay far below 1e-12
        torch.testing.assert_close(r0["params"][name], p, atol=1e-12, rtol=0, msg=name)
    # logged losses: the mean over ranks = the whole batch's mean, rounded to float32 (a few ulps at ~3.4 or ~1.1)
    torch.testing.assert_close(torch.tensor(r0["losses"]), torch.tensor([h["train_loss"] for h in single.history]), atol=1e-6, rtol=0)
    assert r0["metrics"].keys() == single.metrics.keys() == ({"val_loss"} if kind == "next_token" else {"val_loss", "val_accuracy"})
    # the comparison can fail: one process with half the batch ends elsewhere
    assert max((p - q).abs().max().item() for p, q in zip(half.model.parameters(), single.model.parameters())) > 1e-6
    ck = torch.load(tmp_path / "out" / "ckpt.pt", weights_only=True)  # rank 0 wrote it, after gathering both RNG states
    assert len(ck["rng"]) == 2 and ck["data"]["world_size"] == 2
    assert ck["data"]["objective"] == ("NextToken" if kind == "next_token" else "Classification")
    assert ck["config"]["model_class"] == ("GPT" if kind == "next_token" else "SequenceClassifier")
