"""The training loop: schedule, parameter groups, one step with accumulation, mixed precision,
non-finite losses, exact resume in-process, and config validation.

Every run here is a 1-layer GPT of width 16 on random tokens (a few ms a step on one core).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from llmlab.models.gpt import GPT, GPTConfig
from llmlab.train import NonFiniteLoss, TrainConfig, Trainer, train
from llmlab.train.checkpoint import load_checkpoint
from llmlab.train.optim import compile_support, lr_at, make_optimizer, maybe_compile, param_groups, resolve_amp_dtype, train_step

pytestmark = pytest.mark.usefixtures("one_thread")

V = 37  # vocab, block, width: all different so a swapped axis fails loudly



def tiny_config(**kw) -> GPTConfig:
    return GPTConfig(**{"vocab_size": V, "block_size": 12, "n_layer": 1, "n_head": 2, "n_embd": 16, **kw})


def tiny_data(n: int = 3000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Count up modulo V, jumping to a random id 10% of the time: a pattern the loss can learn."""
    g = torch.Generator().manual_seed(seed)
    jump = torch.rand(n, generator=g) < 0.1
    step = torch.where(jump, torch.randint(0, V, (n,), generator=g), torch.ones(n, dtype=torch.long))
    ids = step.cumsum(0) % V
    return ids[: int(0.8 * n)], ids[int(0.8 * n) :]


def tiny_tc(**kw) -> TrainConfig:
    return TrainConfig(**{"max_steps": 30, "batch_size": 4, "lr": 1e-2, "warmup_steps": 3, "eval_interval": 10, "eval_iters": 2,
                          "log_interval": 5, "progress": False, "device": "cpu", **kw})


# ----------------------------------------------------------------------------- lr_at
def test_lr_at_warmup_is_linear_and_never_zero():
    lrs = [lr_at(s, max_lr=2.0, min_lr=0.2, warmup_steps=4, max_steps=20) for s in range(4)]
    assert lrs == [0.5, 1.0, 1.5, 2.0]  # max_lr * (step + 1) / warmup_steps


def test_lr_at_cosine_endpoints_midpoint_and_floor():
    kw = dict(max_lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(10, **kw) == 1.0  # the cosine starts at max_lr at warmup_steps
    assert lr_at(60, **kw) == pytest.approx(0.55, abs=1e-12)  # half way: the mean of max and min
    assert lr_at(35, **kw) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)), abs=1e-12)
    assert lr_at(110, **kw) == pytest.approx(0.1, abs=1e-12)
    assert lr_at(111, **kw) == 0.1 and lr_at(10**6, **kw) == 0.1
    decay = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))  # never increases after warmup


def test_lr_at_edge_cases():
    assert lr_at(0, max_lr=1.0, min_lr=0.0, warmup_steps=0, max_steps=10) == 1.0  # no warmup
    assert lr_at(5, max_lr=1.0, min_lr=0.3, warmup_steps=5, max_steps=5) == 0.3  # warmup == max: no 0/0
    with pytest.raises(ValueError, match="warmup_steps=-1"):
        lr_at(0, max_lr=1.0, min_lr=0.0, warmup_steps=-1, max_steps=10)


# ----------------------------------------------------------------------------- optimizer
def test_param_groups_decay_matrices_only():
    model = GPT(tiny_config())
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "transformer.wte.weight" in decayed  # tied with lm_head: counted once, decayed like a Linear
    assert "transformer.h.0.attn.c_attn.weight" in decayed and "transformer.h.0.mlp.c_proj.weight" in decayed
    assert "transformer.pos.wpe.weight" in kept  # a per-position bias
    assert all(n.endswith("bias") or ".ln_" in n or n.endswith("wpe.weight") for n in kept)
    assert decayed.isdisjoint(kept) and decayed | kept == set(names.values())  # every tensor, once


def test_optimizer_is_fused_on_cpu():
    opt = make_optimizer(GPT(tiny_config()), lr=1e-3, weight_decay=0.1, device=torch.device("cpu"))
    assert opt.defaults["fused"] is True  # torch >= 2.4 has a fused CPU AdamW
    assert opt.defaults["betas"] == (0.9, 0.95)


# ----------------------------------------------------------------------------- train_step
def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_grad_accumulation_equals_one_big_batch():
    """Two micro-batches of 4 make the same step as one batch of 8 (the loss is a mean over rows)."""
    torch.manual_seed(0)
    a = GPT(tiny_config())
    b = GPT(tiny_config())
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, V, (8, 12))
    y = torch.randint(0, V, (8, 12))
    opt_a, opt_b = (torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (a, b))
    la = train_step(a, opt_a, [(x, y)], grad_clip=0.5)
    lb = train_step(b, opt_b, [(x[:4], y[:4]), (x[4:], y[4:])], grad_clip=0.5)
    # float32: the two orders of summing 8 rows differ by a few ulps (~1e-7 relative); AdamW's
    # first step moves each weight by ~lr * sign(grad), so params agree to ~1e-6 of lr.
    torch.testing.assert_close(la, lb, atol=1e-6, rtol=1e-6)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=0, msg=n)
    assert all(p.grad is not None for p in a.parameters())  # grads stay for inspection until the next step


def test_train_step_clips_the_global_norm():
    torch.manual_seed(0)
    model = GPT(tiny_config())
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.randint(0, V, (4, 12))
    train_step(model, opt, [(x, x)], grad_clip=1e-3)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    torch.testing.assert_close(norm, torch.tensor(1e-3), atol=0, rtol=1e-5)  # float32 norm of ~6k numbers


def test_grad_scaler_path_matches_unscaled_step_and_skips_inf():
    """GradScaler("cpu") exercises the fp16 machinery: scale the loss, unscale before clipping,
    skip the step when a grad overflows, and lower the scale."""
    torch.manual_seed(0)
    a, b = GPT(tiny_config()), GPT(tiny_config())
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, V, (4, 12))
    opt_a, opt_b = (torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (a, b))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    train_step(a, opt_a, [(x, x)], grad_clip=1.0)
    train_step(b, opt_b, [(x, x)], scaler=scaler, grad_clip=1.0)
    # scaling by a power of two and back is exact in float32 unless something under/overflows
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-7, rtol=0)
    assert scaler.get_scale() == 2.0**10  # no overflow: the scale only grows after growth_interval steps

    huge = torch.amp.GradScaler("cpu", init_scale=2.0**127)  # loss * 2^127 overflows float32
    before = _params(b)
    train_step(b, opt_b, [(x, x)], scaler=huge, grad_clip=1.0)
    for n, p in b.named_parameters():
        assert torch.equal(p, before[n]), f"{n} changed although the grads were inf"
    assert huge.get_scale() == 2.0**126  # backoff_factor 0.5


# ----------------------------------------------------------------------------- the loop
def test_train_learns_and_records_history(tmp_path):
    tr, va = tiny_data()
    res = train(tiny_config(), tiny_tc(out_dir=tmp_path), tr, va)
    h = res.history
    assert [r["step"] for r in h] == list(range(30))
    assert {"step", "train_loss", "lr", "tokens_per_s"} <= set(h[0])
    assert [r["step"] for r in h if "val_loss" in r] == [9, 19, 29]  # after every eval_interval steps
    assert res.final_val_loss == h[-1]["val_loss"]
    assert h[0]["train_loss"] == pytest.approx(math.log(V), abs=0.3)  # GPT-2 init: nearly uniform
    assert res.final_val_loss < math.log(V) - 1.0  # it is learning to count
    assert [r["lr"] for r in h] == [tiny_tc().lr_at(s) for s in range(30)]
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == h
    ck = load_checkpoint(tmp_path / "ckpt.pt")
    assert ck["step"] == 30 and ck["config"]["train"]["max_steps"] == 30


def test_same_seed_same_run_and_dropout_rng_is_used():
    tr, va = tiny_data()
    a = train(tiny_config(dropout=0.1), tiny_tc(max_steps=8), tr, va).history
    b = train(tiny_config(dropout=0.1), tiny_tc(max_steps=8), tr, va).history
    c = train(tiny_config(dropout=0.1), tiny_tc(max_steps=8, seed=7), tr, va).history
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["train_loss"] for r in a] != [r["train_loss"] for r in c]


class Crash(Exception):
    pass


def test_resume_after_crash_repeats_the_uninterrupted_losses(tmp_path):
    """Crash at step 26 (last checkpoint: step 20), resume: steps 20..39 are bit-identical to the
    uninterrupted run. Dropout is on, so the RNG state must come back too, and the batch order."""
    tr, va = tiny_data()
    cfg = tiny_config(dropout=0.1)
    tc = tiny_tc(max_steps=40, out_dir=tmp_path / "run", resume=True)
    ref = train(cfg, tiny_tc(max_steps=40), tr, va)

    def crash(trainer, record):
        if record["step"] == 25:
            raise Crash

    with pytest.raises(Crash):
        train(cfg, tc, tr, va, callbacks=[crash])
    assert load_checkpoint(tmp_path / "run" / "ckpt.pt")["step"] == 20
    res = train(cfg, tc, tr, va)
    # same ops, same inputs, same thread count on the CPU: the same bits (tolerance 0)
    assert [r["train_loss"] for r in res.history] == [r["train_loss"] for r in ref.history]
    assert [r.get("val_loss") for r in res.history] == [r.get("val_loss") for r in ref.history]
    for (n, p), q in zip(res.model.named_parameters(), ref.model.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0, msg=n)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(40))  # the crashed run's steps 20..25 were dropped, not repeated


def test_resume_refuses_another_model(tmp_path):
    tr, va = tiny_data()
    train(tiny_config(), tiny_tc(max_steps=10, out_dir=tmp_path), tr, va)
    with pytest.raises(ValueError, match="n_embd"):
        Trainer(tiny_config(n_embd=32), tiny_tc(max_steps=20, out_dir=tmp_path, resume=True), tr, va)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    tr, va = tiny_data()

    def poison(trainer, record):  # a weight goes nan after step 14 (last checkpoint: step 10)
        if record["step"] == 14:
            with torch.no_grad():
                trainer.model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")

    with pytest.raises(NonFiniteLoss) as e:
        train(tiny_config(), tiny_tc(out_dir=tmp_path), tr, va, callbacks=[poison])
    msg = str(e.value)
    assert "step 15" in msg and "nan" in msg and str(tmp_path / "ckpt.pt") in msg and "(step 10)" in msg
    assert "learning rate" in msg
    ck = load_checkpoint(tmp_path / "ckpt.pt")
    assert ck["step"] == 10 and all(torch.isfinite(t).all() for t in ck["model"].values())


def test_non_finite_without_checkpoint_says_so():
    tr, va = tiny_data()
    with pytest.raises(NonFiniteLoss, match="No checkpoint was written"):
        train(tiny_config(), tiny_tc(lr=1e30, grad_clip=0.0, weight_decay=0.0), tr, va)


# ----------------------------------------------------------------------------- mixed precision
def test_bf16_autocast_runs_and_is_active():
    tr, va = tiny_data()
    seen = []
    model = GPT(tiny_config())
    model.transformer.h[0].mlp.c_fc.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    res = train(model, tiny_tc(max_steps=10, dtype="bf16"), tr, va)
    assert torch.bfloat16 in seen and torch.float32 not in seen
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert model.transformer.wte.weight.dtype == torch.float32  # master weights stay fp32


def test_fp16_uses_a_grad_scaler_and_checkpoints_it(tmp_path):
    tr, va = tiny_data()
    trainer = Trainer(tiny_config(), tiny_tc(max_steps=10, dtype="fp16", out_dir=tmp_path), tr, va)
    assert isinstance(trainer.scaler, torch.amp.GradScaler) and trainer.amp_dtype == torch.float16
    res = trainer.fit()
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    ck = load_checkpoint(tmp_path / "ckpt.pt")
    assert ck["scaler"]["scale"] == trainer.scaler.get_scale()


def test_amp_dtype_resolution(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_amp_dtype("auto", cpu) is None  # CPUs train in fp32 unless asked
    assert resolve_amp_dtype("fp16", cpu) == torch.float16
    import llmlab.train.optim

    monkeypatch.setattr(llmlab.train.optim, "supports_bf16", lambda d: False)
    with pytest.raises(ValueError, match="dtype='bf16'.*'fp16'"):
        resolve_amp_dtype("bf16", cpu)


def test_compile_falls_back_where_unsupported(monkeypatch):
    cpu = torch.device("cpu")
    ok, why = compile_support(cpu, platform="win32")
    assert not ok and "Windows" in why
    import llmlab.train.optim

    monkeypatch.setattr(llmlab.train.optim.shutil, "which", lambda name: None)
    ok, why = compile_support(cpu)
    assert not ok and "C++ compiler" in why
    model = GPT(tiny_config())
    with pytest.warns(UserWarning, match="compile=True: no C\\+\\+ compiler.*eager"):
        assert maybe_compile(model, cpu) is model


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kw, match",
    [
        ({"max_steps": 0}, "max_steps=0"),
        ({"batch_size": 2.5}, "batch_size=2.5"),
        ({"lr": -1.0}, "lr=-1.0"),
        ({"lr": 0}, "lr=0.0"),
        ({"min_lr": 1.0, "lr": 0.1}, "min_lr=1.0"),
        ({"warmup_steps": 2000}, "warmup_steps=2000"),
        ({"dtype": "fp8"}, "dtype='fp8'"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"beta2": 1.0}, "beta2=1.0"),
        ({"grad_clip": float("nan")}, "grad_clip=nan"),
        ({"compile": "yes"}, "compile='yes'"),
        ({"block_size": 0}, "block_size=0"),
    ],
)
def test_train_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_train_config_from_dict_names_unknown_key():
    with pytest.raises(ValueError, match=r"unknown setting 'max_step' in \[train\] \(did you mean 'max_steps'\?\)"):
        TrainConfig.from_dict({"max_step": 3})
    assert TrainConfig.from_dict(TrainConfig(lr=3).to_dict()) == TrainConfig(lr=3.0)


def test_data_and_block_size_are_checked():
    tr, va = tiny_data()
    with pytest.raises(ValueError, match=r"train_data: token ids span 0\.\.40; expected 0\.\.36"):
        Trainer(tiny_config(), tiny_tc(), torch.cat([tr, torch.tensor([40])]), va)
    with pytest.raises(ValueError, match="block_size=64: expected at most the model's block_size=12"):
        Trainer(tiny_config(), tiny_tc(block_size=64), tr, va)
    with pytest.raises(ValueError, match="val_data: expected a 1-D integer tensor"):
        Trainer(tiny_config(), tiny_tc(), tr, va.float())
