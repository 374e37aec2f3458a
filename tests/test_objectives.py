"""Objectives: one training loop for next-token prediction and for sequence classification.

What is proved here, for both objectives where it applies: the explicit `Trainer(model, objective,
tc)` is the old next-token loop bit for bit; right padding never reaches a real token; gradient
accumulation with padded micro-batches equals one big batch; a run killed in another process
resumes exactly (the objective's generator travels in the checkpoint); a non-finite loss stops
the run and keeps the last good checkpoint; AMP runs; checkpoints rebuild the class that was
trained, older checkpoints still load as a GPT, and resume refuses another model or objective.
DDP equivalence is in test_ddp_objectives.py.

Models are one layer of width 16 on a vocabulary of 23 (a few ms a step on one core).
"""

from __future__ import annotations

import json
import math
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmlab.cli import main
from llmlab.generate.cli import load_model
from llmlab.models import GPT, MODELS, ClassifierConfig, GPTConfig, SequenceClassifier, build_model
from llmlab.text.batches import get_batch
from llmlab.train import Classification, NextToken, NonFiniteLoss, Objective, TrainConfig, Trainer, train
from llmlab.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from llmlab.train.objectives import rank_share

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
V, PAD, T_MAX = 23, 0, 12  # vocab, pad id, block size: all different from the width (16) and batch sizes



def contains_three(n: int, seed: int) -> list[tuple[list[int], int]]:
    """Label 1 when the sequence holds token 3. Lengths 2..11, ids 4..22 otherwise, so neither the
    pad id (0) nor 1, 2 ever occur; half the labels are 1."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = int(torch.randint(2, T_MAX, (1,), generator=g))
        ids = torch.randint(4, V, (length,), generator=g)
        if i % 2:
            ids[int(torch.randint(0, length, (1,), generator=g))] = 3
        out.append((ids.tolist(), i % 2))
    return out


def cls_config(**kw) -> ClassifierConfig:
    return ClassifierConfig(**{"vocab_size": V, "block_size": T_MAX, "n_layer": 1, "n_head": 2, "n_embd": 16, **kw})


def gpt_config(**kw) -> GPTConfig:
    return GPTConfig(**{"vocab_size": V, "block_size": T_MAX, "n_layer": 1, "n_head": 2, "n_embd": 16, **kw})


def counting_ids(n: int = 3000) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    jump = torch.rand(n, generator=g) < 0.1
    ids = torch.where(jump, torch.randint(0, V, (n,), generator=g), torch.ones(n, dtype=torch.long)).cumsum(0) % V
    return ids[: int(0.8 * n)], ids[int(0.8 * n) :]


def tc_(**kw) -> TrainConfig:
    return TrainConfig(**{"max_steps": 20, "batch_size": 4, "lr": 1e-2, "warmup_steps": 3, "eval_interval": 10, "eval_iters": 2,
                          "log_interval": 5, "progress": False, "device": "cpu", **kw})


def classification(**kw) -> Classification:
    return Classification(contains_three(200, 0), contains_three(40, 1), PAD, **kw)


# ----------------------------------------------------------------------------- drawing batches
def test_rank_share_splits_each_micro_batch_between_ranks():
    t = torch.arange(12)  # one step: n_micro=2, world_size=2, b=3
    assert rank_share(t, 2, 2, 0).tolist() == [[0, 1, 2], [6, 7, 8]]
    assert rank_share(t, 2, 2, 1).tolist() == [[3, 4, 5], [9, 10, 11]]
    assert rank_share(t, 2, 1, 0).tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]  # one process: the union
    with pytest.raises(ValueError, match="12 rows do not split into n_micro=5 x world_size=1"):
        rank_share(t, 5, 1, 0)


def test_next_token_draws_the_windows_get_batch_draws():
    tr, va = counting_ids()
    obj = NextToken(tr, va, block_size=8, seed=5)
    got = obj.batches(3, n_micro=2, world_size=2, rank=1)  # rank 1's two micro-batches of 3
    x, y = get_batch(tr, 8, 2 * 2 * 3, torch.Generator().manual_seed(5))  # (12, 8): the whole step
    assert len(got) == 2
    for i, (xi, yi) in enumerate(got):
        assert torch.equal(xi, x[6 * i + 3 : 6 * i + 6]) and torch.equal(yi, y[6 * i + 3 : 6 * i + 6])


def test_classification_pads_on_the_right_and_keeps_lengths():
    data = [([5, 6, 7], 1), ([8], 0), ([9, 10], 1)]
    obj = Classification(data, data, pad_id=PAD)
    x, lengths, labels = obj.collate(obj.train_seqs, obj.train_labels, torch.tensor([1, 0, 2]))
    assert x.tolist() == [[8, 0, 0], [5, 6, 7], [9, 10, 0]]  # (B, T) with T = the longest of this batch
    assert lengths.tolist() == [1, 3, 2] and labels.tolist() == [0, 1, 1]
    assert obj.tokens((x, lengths, labels)) == 9  # positions the model runs, padding included


def test_one_objective_gives_two_runs_the_same_batches():
    """bind() starts a run: it rewinds the generator, so reusing the object repeats the batch order."""
    obj = classification()
    a = train(cls_config(), obj, tc_(max_steps=4, eval_interval=4)).history
    b = train(cls_config(), obj, tc_(max_steps=4, eval_interval=4)).history
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]


# ----------------------------------------------------------------------------- the classifier
def test_right_padding_never_reaches_a_real_token():
    torch.manual_seed(0)
    model = SequenceClassifier(cls_config(n_classes=3)).eval()  # K=3: the head's axis differs from the rest
    seqs = [torch.tensor(s) for s, _ in contains_three(5, 2)]
    lengths = torch.tensor([len(s) for s in seqs])
    with torch.no_grad():
        alone = torch.cat([model(s[None], lengths[i : i + 1]) for i, s in enumerate(seqs)])  # (5, K), no padding
        padded = torch.full((5, T_MAX), PAD)
        for i, s in enumerate(seqs):
            padded[i, : len(s)] = s
        batched = model(padded, lengths)  # (5, K)
        junk = padded.clone()
        junk[padded == PAD] = 17  # other filler, same shapes: the same arithmetic on the real tokens
        assert torch.equal(model(junk, lengths), batched)
        # alone vs batched: other shapes, so other summation orders: a few float32 ulps at the
        # logits' size here (|logit| < 0.2, ulp 1.5e-8; measured 7e-9)
        torch.testing.assert_close(batched, alone, atol=1e-7, rtol=0)
        wrong = model(padded, torch.full((5,), T_MAX))  # pooling the last position, padding and all
    assert batched.shape == (5, 3)
    assert (wrong - batched).abs().max() > 1e-3  # the comparison above can fail


def test_classifier_reuses_the_gpt_trunk():
    torch.manual_seed(0)
    gpt = GPT(gpt_config())
    clf = SequenceClassifier(cls_config())
    trunk = {k: v for k, v in clf.state_dict().items() if k.startswith("transformer.")}
    assert set(trunk) == {k for k in gpt.state_dict() if k.startswith("transformer.")}  # same names: weights load
    clf.transformer.load_state_dict(gpt.transformer.state_dict())
    x = torch.randint(1, V, (2, 7))
    feats = []
    clf.transformer.ln_f.register_forward_hook(lambda m, i, o: feats.append(o))
    with torch.no_grad():
        gpt_logits, _ = gpt(x)  # lm_head(ln_f(h)) at every position
        clf(x, torch.tensor([7, 7]))  # head(ln_f(h)) at the last position
        # the same trunk computes the same h; ln_f on (B, C) instead of (B, T, C) may round the
        # other way somewhere (measured: identical); |logits| < 1, so 1e-7 is a couple of ulps
        torch.testing.assert_close(gpt.lm_head(feats[0]), gpt_logits[:, -1], atol=1e-7, rtol=0)


def test_classification_learns_and_reports_accuracy():
    tr, va = contains_three(400, 0), contains_three(100, 1)
    tc = tc_(max_steps=100, batch_size=16, warmup_steps=5, eval_interval=50, eval_iters=10)
    res = train(cls_config(), Classification(tr, va, PAD), tc)
    first = res.history[0]["train_loss"]
    assert first == pytest.approx(math.log(2), abs=0.1)  # GPT-2 init: the head starts near uniform
    assert [r["step"] for r in res.history if "val_accuracy" in r] == [49, 99]
    assert res.metrics == {"val_loss": res.final_val_loss, "val_accuracy": res.history[-1]["val_accuracy"]}
    assert res.metrics["val_accuracy"] >= 0.95 and res.final_val_loss < 0.2  # chance: 0.5 and ln 2 = 0.69
    assert isinstance(res.model, SequenceClassifier)


# ----------------------------------------------------------------------------- the loop, for any objective
def test_explicit_next_token_objective_is_the_old_shorthand_bit_for_bit(tmp_path):
    tr, va = counting_ids()
    old = train(gpt_config(dropout=0.1), tc_(block_size=8), tr, va)
    new = train(gpt_config(dropout=0.1), NextToken(tr, va, block_size=8, seed=1337), tc_())
    assert [r["train_loss"] for r in new.history] == [r["train_loss"] for r in old.history]
    assert new.final_val_loss == old.final_val_loss and new.metrics == {"val_loss": old.final_val_loss}
    for (n, p), q in zip(new.model.named_parameters(), old.model.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0, msg=n)


class PerTokenMean(Classification):
    """The trap: a loss weighted by length. Each micro-batch's weights then sum to its own token
    count, and a mean of micro-batch means is no longer the mean of the whole batch."""

    def loss(self, model, batch):
        x, lengths, labels = batch
        ce = torch.nn.functional.cross_entropy(model(x, lengths), labels, reduction="none")
        return (ce * lengths).sum() / lengths.sum()


@pytest.mark.parametrize("objective", [Classification, PerTokenMean])
def test_accumulating_padded_micro_batches_equals_one_big_batch(objective):
    """grad_accum=2 of 4 sequences vs 1 of 8: the same 8 examples (one draw per step), but the
    halves are padded to their own longest. The per-sequence mean makes the two the same step."""
    data = objective(contains_three(200, 0), contains_three(40, 1), PAD)
    widths = [b[0].shape[1] for b in data.batches(4, n_micro=2)]
    assert widths[0] != widths[1]  # the micro-batches really are padded differently
    kw = dict(max_steps=4, eval_interval=4, grad_clip=0.5)
    torch.manual_seed(0)
    a = SequenceClassifier(cls_config()).double()  # float64: what is left is summation order (~1e-16)
    b = SequenceClassifier(cls_config()).double()
    b.load_state_dict(a.state_dict())
    two = train(a, objective(contains_three(200, 0), contains_three(40, 1), PAD), tc_(batch_size=4, grad_accum=2, **kw))
    one = train(b, objective(contains_three(200, 0), contains_three(40, 1), PAD), tc_(batch_size=8, **kw))
    diff = max((p - q).abs().max().item() for p, q in zip(two.model.parameters(), one.model.parameters()))
    if objective is Classification:
        # float64 round-off (~1e-16) through 4 AdamW steps, which divide by sqrt(v): measured 1e-14
        assert diff < 1e-12
        # the logged losses are float32 (~0.7, ulp 6e-8): the two means may round apart by an ulp or two
        torch.testing.assert_close(torch.tensor([r["train_loss"] for r in two.history]), torch.tensor([r["train_loss"] for r in one.history]),
                                   atol=2e-7, rtol=0)
    else:
        assert diff > 1e-3  # the test above can fail: a per-token mean breaks accumulation (measured 3e-2)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_amp_runs_for_classification(dtype, tmp_path):
    seen = []
    model = SequenceClassifier(cls_config())
    model.transformer.h[0].mlp.c_fc.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    trainer = Trainer(model, classification(), tc_(max_steps=10, dtype=dtype, out_dir=tmp_path))
    res = trainer.fit()
    assert {torch.bfloat16 if dtype == "bf16" else torch.float16} == set(seen)  # autocast reached the trunk
    assert all(math.isfinite(r["train_loss"]) for r in res.history) and math.isfinite(res.metrics["val_accuracy"])
    assert (trainer.scaler is not None) == (dtype == "fp16")
    if dtype == "fp16":
        assert load_checkpoint(tmp_path / "ckpt.pt")["scaler"]["scale"] == trainer.scaler.get_scale()


def test_non_finite_classification_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    def poison(trainer, record):  # the head goes nan after step 14 (last checkpoint: step 10)
        if record["step"] == 14:
            with torch.no_grad():
                trainer.model.head.weight[0, 0] = float("nan")

    with pytest.raises(NonFiniteLoss) as e:
        train(cls_config(), classification(), tc_(out_dir=tmp_path), callbacks=[poison])
    assert "step 15" in str(e.value) and "nan" in str(e.value) and "(step 10)" in str(e.value)
    ck = load_checkpoint(tmp_path / "ckpt.pt")
    assert ck["step"] == 10 and all(torch.isfinite(t).all() for t in ck["model"].values())
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == list(range(15))  # not the nan one


# ----------------------------------------------------------------------------- exact resume in a new process
RUN = '''
import os, sys
import torch
from llmlab.models import ClassifierConfig, GPTConfig
from llmlab.train import Classification, NextToken, TrainConfig, train

def data(kind):
    if kind == "next_token":
        g = torch.Generator().manual_seed(0)
        jump = torch.rand(3000, generator=g) < 0.1
        ids = torch.where(jump, torch.randint(0, 23, (3000,), generator=g), torch.ones(3000, dtype=torch.long)).cumsum(0) % 23
        return GPTConfig(vocab_size=23, block_size=12, n_layer=1, n_head=2, n_embd=16, dropout=0.1), NextToken(ids[:2400], ids[2400:], seed=3)
    g = torch.Generator().manual_seed(0)
    def sample(n):
        out = []
        for i in range(n):
            L = int(torch.randint(2, 12, (1,), generator=g))
            ids = torch.randint(4, 23, (L,), generator=g)
            if i % 2:
                ids[int(torch.randint(0, L, (1,), generator=g))] = 3
            out.append((ids.tolist(), i % 2))
        return out
    cfg = ClassifierConfig(vocab_size=23, block_size=12, n_layer=1, n_head=2, n_embd=16, dropout=0.1)
    return cfg, Classification(sample(200), sample(40), pad_id=0, seed=3)

def run(kind, out=None, die_at=-1):
    torch.set_num_threads(1)  # same reduction order in every process
    cfg, objective = data(kind)
    tc = TrainConfig(max_steps=30, batch_size=4, lr=1e-2, warmup_steps=3, eval_interval=10, eval_iters=2,
                     log_interval=5, progress=False, device="cpu", out_dir=out, resume=out is not None)

    def die(trainer, record):  # no cleanup at all, like SIGKILL: the last checkpoint is step 20
        if record["step"] == die_at:
            os._exit(3)

    return train(cfg, objective, tc, callbacks=[die] if die_at >= 0 else [])

if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], int(sys.argv[3]))
'''


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    p = tmp_path_factory.mktemp("objective_resume") / "run.py"
    p.write_text(RUN)
    return p


def _run(script: Path, *args):
    n = torch.get_num_threads()
    try:
        return runpy.run_path(str(script))["run"](*args)
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("kind", ["next_token", "classification"])
def test_a_run_killed_in_another_process_resumes_exactly(kind, script, tmp_path, monkeypatch):
    """Train 30 steps straight; elsewhere, a process dies at step 25 (checkpoint: 20) and this one
    resumes it to 30. Dropout is on, so the RNG comes back too; the batch order comes from the
    objective's state. Same ops, same inputs, one thread: the same bits (tolerance 0)."""
    ref = _run(script, kind)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script), kind, str(tmp_path), "25"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-3000:]
    ck = load_checkpoint(tmp_path / "ckpt.pt")
    assert ck["step"] == 20 and ck["data"]["objective"] == {"next_token": "NextToken", "classification": "Classification"}[kind]
    res = _run(script, kind, str(tmp_path))
    assert [r["train_loss"] for r in res.history] == [r["train_loss"] for r in ref.history]
    assert res.metrics == ref.metrics
    for (n, p), q in zip(res.model.named_parameters(), ref.model.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0, msg=n)
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == list(range(30))

    # ... and it is the objective's state that makes it exact: without it, steps 20.. draw other batches
    save_checkpoint(ck, tmp_path / "ckpt.pt")
    monkeypatch.setattr(Objective, "load_state_dict", lambda self, state: None)
    lost = _run(script, kind, str(tmp_path))
    assert [r["train_loss"] for r in lost.history][20:] != [r["train_loss"] for r in ref.history][20:]


# ----------------------------------------------------------------------------- checkpoints hold the class
def test_checkpoint_names_the_class_and_rebuilds_it(tmp_path, capsys):
    res = train(cls_config(n_classes=3), classification(), tc_(max_steps=3, eval_interval=3, out_dir=tmp_path))
    ck = load_checkpoint(tmp_path / "ckpt.pt")
    assert ck["config"]["model_class"] == "SequenceClassifier" and ck["config"]["model"] == cls_config(n_classes=3).to_dict()
    assert set(ck["data"]) == {"objective", "state", "world_size"} and ck["data"]["objective"] == "Classification"
    model, tok = load_model(tmp_path / "ckpt.pt")
    assert type(model) is SequenceClassifier and tok is None and not model.training
    x, lengths = torch.randint(1, V, (3, 5)), torch.tensor([5, 2, 4])
    with torch.no_grad():
        assert torch.equal(model(x, lengths), res.model.eval()(x, lengths))
    assert main(["sample", "--checkpoint", str(tmp_path / "ckpt.pt"), "--device", "cpu"]) == 2
    assert "holds a SequenceClassifier; llmlab sample generates text with a GPT" in capsys.readouterr().err


def test_an_older_checkpoint_loads_as_a_gpt_and_resumes(tmp_path):
    """Before the class name: config["model"] only, and `data` was the generator's state itself."""
    tr, va = counting_ids()
    ref = train(gpt_config(), tc_(), tr, va)
    train(gpt_config(), tc_(out_dir=tmp_path, max_steps=20), tr, va, callbacks=[lambda t, r: r["step"] == 9])  # stops at 10
    ck = load_checkpoint(tmp_path / "ckpt.pt")
    assert ck["step"] == 10
    ck["config"].pop("model_class")
    ck["data"] = {"generator": ck["data"]["state"]["generator"], "world_size": 1}
    save_checkpoint(ck, tmp_path / "ckpt.pt")
    assert type(model_from_checkpoint(load_checkpoint(tmp_path / "ckpt.pt"))) is GPT
    assert type(load_model(tmp_path / "ckpt.pt")[0]) is GPT
    res = train(gpt_config(), tc_(out_dir=tmp_path, resume=True), tr, va)
    assert [r["train_loss"] for r in res.history] == [r["train_loss"] for r in ref.history]


def test_resume_refuses_another_model_class_config_or_objective(tmp_path):
    tr, va = counting_ids()
    train(cls_config(), classification(), tc_(max_steps=3, eval_interval=3, out_dir=tmp_path))
    with pytest.raises(ValueError, match="is for another model: it holds a SequenceClassifier, this run trains a GPT"):
        Trainer(gpt_config(), tc_(out_dir=tmp_path, resume=True), tr, va)
    with pytest.raises(ValueError, match=r"is for another model; differing settings \(saved, now\): \{'n_classes': \(2, 4\)\}"):
        Trainer(cls_config(n_classes=4), classification(), tc_(out_dir=tmp_path, resume=True))

    class OtherData(Classification):
        pass

    with pytest.raises(ValueError, match="trained with objective Classification, this run uses OtherData"):
        Trainer(cls_config(), OtherData(contains_three(20, 0), contains_three(4, 1), PAD), tc_(out_dir=tmp_path, resume=True))


def test_build_model_from_a_config_or_a_name():
    assert type(build_model(cls_config())) is SequenceClassifier and type(build_model(gpt_config())) is GPT
    assert type(build_model(gpt_config().to_dict(), "GPT")) is GPT and set(MODELS) == {"GPT", "SequenceClassifier", "Encoder", "EncoderDecoder"}
    with pytest.raises(ValueError, match="name='Bert': expected the model class of the config dict, one of GPT, SequenceClassifier, Encoder, EncoderDecoder"):
        build_model({}, "Bert")
    with pytest.raises(ValueError, match="name=None: expected the model class"):
        build_model({"vocab_size": 3})
    with pytest.raises(ValueError, match="model config: expected one of GPTConfig, ClassifierConfig, EncoderConfig, Seq2SeqConfig, got list"):
        build_model([3])


# ----------------------------------------------------------------------------- bad input names the parameter
def test_objectives_reject_bad_input_by_name():
    good = contains_three(4, 0)
    cases = [
        (lambda: Classification([], good, PAD), "train_set: expected a non-empty sequence"),
        (lambda: Classification(good, [([], 1)], PAD), r"val_set\[0\]: expected a non-empty 1-D sequence"),
        (lambda: Classification(good, [([4, 5], -1)], PAD), r"val_set\[0\]: label=-1; expected a class index"),
        (lambda: Classification([([4, PAD, 5], 1)], good, PAD), r"train_set\[0\]: contains pad_id=0; expected a pad id that no sequence uses"),
        (lambda: Classification(good, good, -1), "pad_id=-1: expected a token id"),
        (lambda: Classification(good, good, PAD, seed=1.5), "seed=1.5: expected an integer"),
        (lambda: NextToken(torch.arange(50), torch.arange(50), block_size=0), "block_size=0: expected a positive integer"),
        (lambda: ClassifierConfig(n_classes=1), "n_classes=1: expected an integer >= 2"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()


def test_objectives_check_the_model_they_train():
    tr, va = counting_ids()
    with pytest.raises(ValueError, match="model: Classification expected an llmlab.models.classifier.SequenceClassifier, got GPT"):
        Trainer(gpt_config(), classification(), tc_())
    with pytest.raises(ValueError, match="model: NextToken expected an llmlab.models.gpt.GPT .* got SequenceClassifier"):
        Trainer(cls_config(), NextToken(tr, va), tc_())
    with pytest.raises(ValueError, match=r"train_set: labels span 0\.\.2; expected 0\.\.1 \(the model's n_classes=2\)"):
        Trainer(cls_config(n_classes=2), Classification([([4], 0), ([5], 2)], [([4], 0)], PAD), tc_())  # labels up to 2
    with pytest.raises(ValueError, match="pad_id=30: expected 0..22"):
        Trainer(cls_config(), Classification(contains_three(4, 0), contains_three(4, 1), 30), tc_())
    with pytest.raises(ValueError, match="train_set: a sequence of 13 tokens; expected at most the model's block_size=12"):
        Trainer(cls_config(), Classification([([4] * 13, 0)], [([4], 1)], PAD), tc_())
    with pytest.raises(ValueError, match=r"val_set: token ids span 4\.\.40; expected 0\.\.22"):
        Trainer(cls_config(), Classification([([4], 0)], [([4, 40], 1)], PAD), tc_())


def test_trainer_arguments_are_checked():
    tr, va = counting_ids()
    with pytest.raises(ValueError, match=r"Trainer\(model, Tensor, Tensor\): expected \(model, objective, TrainConfig\) "
                                         r"or \(model, TrainConfig, train_ids, val_ids\)"):
        Trainer(gpt_config(), tr, va)
    with pytest.raises(ValueError, match="objective: expected an llmlab.train.objectives.Objective .* got tuple"):
        Trainer(gpt_config(), (tr, va), tc_())
    with pytest.raises(ValueError, match="block_size=8: TrainConfig.block_size is for the next-token shorthand"):
        Trainer(gpt_config(), NextToken(tr, va), tc_(block_size=8))
    with pytest.raises(ValueError, match="model config: expected one of GPTConfig, ClassifierConfig, EncoderConfig, Seq2SeqConfig, got str"):
        Trainer("gpt2", NextToken(tr, va), tc_())
