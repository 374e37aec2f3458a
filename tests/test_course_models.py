"""The course models' cache (llmlab.train.course_models): train once, load after, retrain what is unusable.

Every test trains a tiny recipe (1 layer of width 16, a few steps on python-docs) into a cache
under tmp_path, so nothing touches the real cache and the whole file runs in seconds."""

from __future__ import annotations

import dataclasses
import random
import shutil

import pytest
import torch

from llmlab.text import load_corpus
from llmlab.train import course_models as cm
from llmlab.train.checkpoint import load_checkpoint

TINY = cm.Recipe(
    name="tiny-test",
    corpus="python-docs",
    tokenizer="char",
    model=dict(block_size=16, n_layer=1, n_head=2, n_embd=16, bias=False, pos_encoding="rope"),
    train=dict(max_steps=4, batch_size=4, block_size=16, lr=1e-3, warmup_steps=1, eval_interval=4, eval_iters=1,
               device="cpu", seed=3, progress=False),
    about="a test recipe",
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A cache folder holding TINY, trained once for the whole file."""
    folder = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMLAB_CACHE", str(folder))
        cm.course_model(TINY, verbose=False)
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache of this test's own."""
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def cached(trained, tmp_path, monkeypatch):
    """A cache of this test's own that already holds TINY."""
    shutil.copytree(trained, tmp_path / "c")
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path / "c"))
    return tmp_path / "c"


def the_path(r: cm.Recipe = TINY):
    return cm.course_model_path(r, cm.recipe_key(r, load_corpus(r.corpus)))


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_trains_once_into_the_cache_then_loads_the_same_model(cache, capsys):
    m1, tok1 = cm.course_model(TINY)
    first = capsys.readouterr().out
    assert "training the course model 'tiny-test'" in first and "trained in" in first
    path = the_path()
    assert path.is_file() and path.parent == cache / "models" and path.name.startswith("tiny-test-")
    m2, tok2 = cm.course_model(TINY)
    second = capsys.readouterr().out
    assert "loaded the course model 'tiny-test' from the cache" in second and "training" not in second
    assert same_weights(m1, m2) and not m2.training
    assert tok1.to_dict() == tok2.to_dict()
    card = cm.course_model_card(TINY)
    assert card["recipe"] == TINY.key_material() and card["parameters"] == m2.num_parameters() and card["train_seconds"] > 0
    assert load_checkpoint(path)["config"]["model"]["n_embd"] == 16  # an ordinary llmlab checkpoint


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other recipe"])
def test_an_unusable_cache_file_is_trained_again_not_crashed_on(cached, capsys, damage):
    m1, _ = cm.course_model(TINY, verbose=False)
    path = the_path()
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        ck = load_checkpoint(path)
        ck["extra"]["course_model"]["key"] = "0" * 64
        torch.save(ck, path)
    capsys.readouterr()
    m2, _ = cm.course_model(TINY)
    out = capsys.readouterr().out
    assert "is unusable" in out and "training it again" in out
    assert same_weights(m1, m2)  # the same recipe trains the same weights
    cm.course_model(TINY)
    assert "loaded" in capsys.readouterr().out  # and the rewritten file is good


def test_the_key_follows_the_recipe_and_the_corpus():
    text = load_corpus("python-docs")
    k = cm.recipe_key(TINY, text)
    assert k == cm.recipe_key(dataclasses.replace(TINY, about="other words"), text)  # a description is not a weight
    assert k != cm.recipe_key(dataclasses.replace(TINY, train={**TINY.train, "max_steps": 5}), text)
    assert k != cm.recipe_key(dataclasses.replace(TINY, model={**TINY.model, "n_embd": 32}), text)
    assert k != cm.recipe_key(TINY, text + " ")  # another Python release's python-docs: another model


def test_training_and_loading_leave_the_callers_random_state_alone(cache):
    torch.manual_seed(123)
    random.seed(5)
    expected = torch.rand(3), random.random()
    for what in ("trains (seeding the generators with tc.seed)", "loads (building the model draws its init)"):
        torch.manual_seed(123)
        random.seed(5)
        cm.course_model(TINY, verbose=False)
        assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1], f"course_model {what} moved the caller's RNG"


def test_names_fast_mode_and_bad_recipes(monkeypatch):
    monkeypatch.setenv("LLMLAB_FAST", "1")
    assert cm.recipe("python-docs-chars") is cm.FAST_RECIPES["python-docs-chars"]
    assert cm.recipe("python-docs-chars", fast=False) is cm.RECIPES["python-docs-chars"]
    assert cm.recipe().name != cm.recipe(fast=False).name  # separate cache files
    with pytest.raises(ValueError, match="name='nope'.*python-docs-chars"):
        cm.recipe("nope")
    with pytest.raises(ValueError, match="tokenizer='words'"):
        dataclasses.replace(TINY, tokenizer="words")
    with pytest.raises(ValueError, match="vocab_size"):
        dataclasses.replace(TINY, model={**TINY.model, "vocab_size": 10})
    with pytest.raises(ValueError, match="n_embd"):
        dataclasses.replace(TINY, model={**TINY.model, "n_embd": 15})  # not divisible by n_head: refused before any training
