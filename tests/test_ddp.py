"""DDP on the CPU: two gloo processes with half the batch each end with the parameters one
process reaches with the whole batch.

The two workers are started the way torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT in the environment), so this also tests `setup_distributed`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from _ddp import start_ranks, wait_ranks
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent


SETUP = '''
import torch
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.train import TrainConfig

def setup(batch_size, out_dir=None):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 29, (2000,), generator=g)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=29, block_size=10, n_layer=1, n_head=2, n_embd=12)).double()
    tc = TrainConfig(max_steps=6, batch_size=batch_size, grad_accum=2, lr=1e-2, warmup_steps=2, eval_interval=3,
                     eval_iters=2, log_interval=2, progress=False, device="cpu", out_dir=out_dir)
    return model, tc, ids[:1600], ids[1600:]
'''

WORKER = '''
import sys, torch
sys.path.insert(0, sys.argv[1])
from setup_run import setup
from llmlab.train import train
model, tc, tr, va = setup(batch_size=3, out_dir=sys.argv[2])
res = train(model, tc, tr, va)
torch.save({"params": res.model.state_dict(), "losses": [r["train_loss"] for r in res.history]}, sys.argv[3])
'''


def test_two_gloo_processes_equal_one_process_with_the_whole_batch(tmp_path):
    (tmp_path / "setup_run.py").write_text(SETUP)
    (tmp_path / "worker.py").write_text(WORKER)
    procs = start_ranks(tmp_path / "worker.py", lambda rank: [tmp_path, tmp_path / "out", tmp_path / f"rank{rank}.pt"])

    # meanwhile, here: one process, batch 2 x 3 = 6 sequences per micro-batch
    sys.path.insert(0, str(tmp_path))
    try:
        from setup_run import setup
    finally:
        sys.path.remove(str(tmp_path))
    try:
        model, tc, tr, va = setup(batch_size=6)
        single = train(model, tc, tr, va)
    finally:
        sys.modules.pop("setup_run", None)

    wait_ranks(procs)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    for name, p in single.model.state_dict().items():
        # DDP keeps the replicas identical: same averaged grads, same AdamW arithmetic
        torch.testing.assert_close(r0["params"][name], r1["params"][name], atol=0, rtol=0, msg=name)
        # float64: the only difference is the order of summing 6 rows (all-reduce of two halves vs
        # one mean), ~1e-16 relative per step; 6 AdamW steps at lr 1e-2 keep that far below 1e-12.
        torch.testing.assert_close(r0["params"][name], p, atol=1e-12, rtol=0, msg=name)
    # logged losses are the mean over ranks = the whole batch's mean; they are logged in float32,
    # and the two means round differently: allow a few float32 ulps at ~3.4 (ulp 2.4e-7)
    torch.testing.assert_close(torch.tensor(r0["losses"]), torch.tensor([h["train_loss"] for h in single.history]), atol=1e-6, rtol=0)
    assert (tmp_path / "out" / "ckpt.pt").is_file()  # rank 0 wrote it, after gathering both ranks' RNG states
    assert len(torch.load(tmp_path / "out" / "ckpt.pt", weights_only=True)["rng"]) == 2


def test_half_batch_alone_is_not_the_same_run():
    """The test above can fail: one process with batch 3 (half the data) ends elsewhere."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=29, block_size=10, n_layer=1, n_head=2, n_embd=12)
    ids = torch.randint(0, 29, (2000,), generator=torch.Generator().manual_seed(0))
    a = GPT(cfg).double()
    b = GPT(cfg).double()
    b.load_state_dict(a.state_dict())
    kw = dict(max_steps=3, grad_accum=2, lr=1e-2, warmup_steps=2, eval_interval=3, eval_iters=1, progress=False, device="cpu")
    pa = train(a, TrainConfig(batch_size=6, **kw), ids[:1600], ids[1600:]).model.transformer.wte.weight
    pb = train(b, TrainConfig(batch_size=3, **kw), ids[:1600], ids[1600:]).model.transformer.wte.weight
    assert (pa - pb).abs().max() > 1e-6
