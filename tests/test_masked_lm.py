"""Masked-LM pieces: BERT's masking (llmlab.text.masking), the loss, the MaskedLM objective (static and
dynamic), pseudo-log-likelihood (llmlab.train.masked_lm), and the course encoder's recipe."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmlab.models.encoder import Encoder, EncoderConfig
from llmlab.text.masking import IGNORE, SpecialTokens, mask_all_selected, mask_tokens
from llmlab.train.loop import TrainConfig, Trainer
from llmlab.train.masked_lm import MaskedLM, mlm_loss, pseudo_log_likelihood

S = SpecialTokens.after(20)  # pad 20, cls 21, sep 22, mask 23; V = 24


def _ids(B=64, T=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    return S.wrap(torch.randint(20, (B, T - 2), generator=g))


def test_mask_tokens_rates_are_binomial_within_5_sigma():
    ids = _ids()
    inputs, labels = mask_tokens(ids, S.vocab_size, S.mask, S.ids, 0.15, torch.Generator().manual_seed(1))
    ordinary = ~torch.isin(ids, torch.tensor(sorted(S.ids)))
    n = int(ordinary.sum())
    sel = labels != IGNORE
    k = int(sel.sum())
    assert abs(k - 0.15 * n) < 5 * math.sqrt(n * 0.15 * 0.85)
    masked, kept = int((inputs[sel] == S.mask).sum()), int((inputs[sel] == ids[sel]).sum())
    assert abs(masked - 0.8 * k) < 5 * math.sqrt(k * 0.8 * 0.2)
    p_keep = 0.1 + 0.1 / 20  # kept, or replaced by the same token (1 in 20)
    assert abs(kept - p_keep * k) < 5 * math.sqrt(k * p_keep * (1 - p_keep))


def test_mask_tokens_exact_properties():
    ids = _ids()
    before = ids.clone()
    inputs, labels = mask_tokens(ids, S.vocab_size, S.mask, S.ids, 0.3, torch.Generator().manual_seed(2))
    assert torch.equal(ids, before)  # the input is intact
    sel = labels != IGNORE
    assert torch.equal(labels[sel], ids[sel])  # labels hold the originals
    assert not sel[:, 0].any() and not sel[:, -1].any()  # [CLS] and [SEP] never selected
    assert torch.equal(inputs[~sel], ids[~sel])  # unselected positions unchanged
    assert not torch.isin(inputs[sel], torch.tensor([S.pad, S.cls, S.sep])).any()  # random draws skip the specials
    again = mask_tokens(ids, S.vocab_size, S.mask, S.ids, 0.3, torch.Generator().manual_seed(2))
    assert all(torch.equal(a, b) for a, b in zip(again, (inputs, labels)))


def test_mask_tokens_errors_name_the_parameter():
    with pytest.raises(ValueError, match="ids"):
        mask_tokens(torch.zeros(5), 24, 23, S.ids)
    with pytest.raises(ValueError, match="p="):
        mask_tokens(_ids(), 24, 23, S.ids, p=1.5)
    with pytest.raises(ValueError, match="mask_id"):
        mask_tokens(_ids(), 24, 5, S.ids)


def test_evaluation_masking_masks_every_selected_position():
    inputs, labels = mask_all_selected(_ids(), S.mask, S.ids, 0.15, torch.Generator().manual_seed(3))
    sel = labels != IGNORE
    assert sel.any() and (inputs[sel] == S.mask).all()


def test_mlm_loss_equals_cross_entropy_on_the_selected_positions():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 7, 11, generator=g)
    labels = torch.randint(11, (3, 7), generator=g)
    labels[torch.rand(3, 7, generator=g) > 0.3] = IGNORE
    sel = labels != IGNORE
    want = F.cross_entropy(logits[sel], labels[sel])  # the oracle: plain cross-entropy over the kept rows
    torch.testing.assert_close(mlm_loss(logits, labels), want)
    assert mlm_loss(logits, torch.full((3, 7), IGNORE)).item() == 0.0  # no label: 0, not nan


def _objective(**kw):
    g = torch.Generator().manual_seed(5)
    return MaskedLM(torch.randint(20, (3000,), generator=g), torch.randint(20, (600,), generator=g), S, 18, **kw)


def _model():
    torch.manual_seed(0)
    return Encoder(EncoderConfig(vocab_size=S.vocab_size, block_size=18, n_layer=1, n_head=2, n_embd=16))


def test_static_masking_repeats_a_window_with_its_mask_dynamic_redraws_it():
    static, dynamic = _objective(pool=4, static=True), _objective(pool=4)
    static.bind(_model())
    dynamic.bind(_model())
    xs, ys = zip(*[static.batches(8)[0] for _ in range(5)])
    X = torch.cat(xs)
    assert (torch.cat(ys) != -100).any()
    assert len({tuple(r.tolist()) for r in X}) <= 4  # 40 rows, at most 4 distinct (window, mask) pairs
    xd = torch.cat([dynamic.batches(8)[0][0] for _ in range(5)])
    assert len({tuple(r.tolist()) for r in xd}) > 8  # the same 4 windows, masked afresh
    assert (X[:, 0] == S.cls).all() and (X[:, -1] == S.sep).all()
    with pytest.raises(ValueError, match="pool"):
        _objective(static=True)


def test_training_with_the_objective_lowers_the_validation_loss():
    counting = torch.arange(3000) % 20  # 0, 1, ..., 19, 0, 1, ...: a masked token follows from its neighbours
    obj = MaskedLM(counting, counting[:600], S, 18)
    tc = TrainConfig(max_steps=60, batch_size=16, lr=1e-2, eval_interval=60, eval_iters=4, device="cpu", progress=False, seed=0)
    model = _model()
    obj.bind(model)
    before = obj.evaluate(model.eval(), 8, 4)
    result = Trainer(model, obj, tc).fit()
    assert result.metrics["val_loss"] < before["val_loss"] - 0.15  # 3.18 -> 2.98 measured
    assert 0.0 <= result.metrics["val_accuracy"] <= 1.0


def test_objective_refuses_a_model_it_does_not_fit():
    obj = _objective()
    with pytest.raises(ValueError, match="vocab_size"):
        obj.bind(Encoder(EncoderConfig(vocab_size=30, block_size=18, n_layer=1, n_head=2, n_embd=16)))
    with pytest.raises(ValueError, match="MLM head"):
        obj.bind(Encoder(EncoderConfig(vocab_size=S.vocab_size, block_size=18, n_layer=1, n_head=2, n_embd=16, mlm_head=False)))


def test_pseudo_log_likelihood_equals_the_one_at_a_time_loop():
    model = _model().eval()
    ids = S.wrap(torch.randint(20, (1, 9), generator=torch.Generator().manual_seed(6)))[0]
    want = 0.0
    with torch.no_grad():
        for t in range(1, len(ids) - 1):  # [CLS] and [SEP] are not scored
            x = ids.clone()
            x[t] = S.mask
            want += model.mlm_logits(model(x[None]))[0, t].log_softmax(-1)[ids[t]].item()
    got = pseudo_log_likelihood(model, ids, S.mask, S.ids, batch_size=4)  # three batches: 4 + 4 + 1
    assert got == pytest.approx(want, abs=1e-4)
    with pytest.raises(ValueError, match="ids"):
        pseudo_log_likelihood(model, ids[None], S.mask)


def test_encoder_recipe_keeps_the_gpt_recipes_cache_key():
    from llmlab.train import course_models as cm

    gpt = cm.recipe("python-docs-chars", fast=False)
    assert "objective" not in gpt.key_material()  # the lesson-08 model's key is what it was before encoders
    enc = cm.recipe("python-docs-chars-mlm", fast=True)
    assert enc.key_material()["objective"] == "masked-lm"
    assert enc.model == cm.recipe("python-docs-chars-mlm", fast=False).model == {**gpt.model}
    with pytest.raises(ValueError, match="objective"):
        cm.Recipe(name="x", corpus="python-docs", tokenizer="char", model={}, train={}, objective="clm")


def test_plots_of_the_lesson_draw_and_refuse_bad_input():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmlab.viz.mlm import plot_masking_runs, plot_similarity

    runs = {"static": [{"step": 9, "val_accuracy": 0.2}, {"step": 19, "train_loss": 1.0}, {"step": 19, "val_accuracy": 0.3}],
            "dynamic": [{"step": 9, "val_accuracy": 0.25}]}
    ax = plot_masking_runs(runs)
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [2, 1]
    with pytest.raises(ValueError, match="val_loss"):
        plot_masking_runs(runs, "val_loss")
    ax = plot_similarity(torch.eye(3), ["a", "b", "c" * 50])
    assert len(ax.get_images()) == 1 and len(ax.texts) == 9
    with pytest.raises(ValueError, match="sims"):
        plot_similarity(torch.eye(2), ["a", "b", "c"])
    plt.close("all")


def test_course_encoder_trains_once_then_loads_from_the_cache(tmp_path, monkeypatch, capsys):
    from llmlab.train import course_models as cm

    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    model, tok = cm.course_model("python-docs-chars-mlm", fast=True)
    assert "training the course model 'python-docs-chars-mlm-fast'" in capsys.readouterr().out
    assert isinstance(model, Encoder) and model.config.vocab_size == tok.vocab_size + 4 and not model.training
    again, _ = cm.course_model("python-docs-chars-mlm", fast=True)
    assert "loaded the course model" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    card = cm.course_model_card("python-docs-chars-mlm", fast=True)
    assert 0.0 <= card["val_accuracy"] <= 1.0 and card["recipe"]["objective"] == "masked-lm"
