"""Transfer learning for sentiment (lesson 12): the same labelled sentences, seven ways to classify them.

    baselines   bag-of-words logistic regression (torch, L-BFGS), the VADER lexicon (no training)
    MiniLM      frozen features + logistic regression; head-only (the fine-tuning recipe, trunk frozen);
                full fine-tuning (`EncoderClassifier`: a linear head on mean-pooled or [CLS] states)
    course GPT  a classification head on the last real token, trained from scratch vs from the
                pretrained weights of `course_model("python-docs-chars")`

Every method is a small function of its inputs; `score` turns predictions into k / n correct with a
Wilson interval, `learning_curve` repeats a method over label budgets and seeds, `slice_scores` splits
a score by the procedural set's phenomena (negation, contrast).

The fine-tuning machinery (EncoderClassifier, its objective, head-only training on cached features,
the GPT classifier, `fit`) is llmlab.train.finetune's; this module re-exports it, so the lesson reaches
every method as `transfer.<name>`.

`finetuned_minilm_classifier()` fine-tunes all-MiniLM-L6-v2 on the lesson's training split once and
caches it in the course cache (lesson 13 compares prompting with it): `.predict(texts)`, `.test_accuracy`.

Left out on purpose: sklearn (the logistic regression is 20 lines of torch), hyper-parameter searches
beyond a small grid of L2 strengths on the validation split, and more than two classes.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.cache import cache_dir, write_atomic
from llmlab.device import fast_mode
from llmlab.stats import wilson_interval
from llmlab.text.sentiment import NPM_PACKAGE, Review, load_sentiment, split_reviews
from llmlab.train.checkpoint import rng_state, set_rng_state
from llmlab.train.finetune import (  # noqa: F401  (the lesson reaches every method through this module)
    POOLINGS,
    EncoderClassification,
    EncoderClassifier,
    FeatureClassification,
    char_ids,
    encode_texts,
    encoder_features,
    fit,
    gpt_classifier,
    predict_encoder,
    predict_gpt,
    predict_head,
    train_gpt_classifier,
    train_head,
)

FORMAT = 1  # bump when what the cached fine-tuned classifier holds changes


# ----------------------------------------------------------------------------- data and scores
def lesson_data(source: str = "auto", seed: int = 0) -> tuple[dict[str, list[Review]], str]:
    """The lesson's split (70 / 15 / 15, stratified) of load_sentiment(source) -> ({"train", "val", "test"}, note)."""
    reviews, note = load_sentiment(source, seed=seed)
    return split_reviews(reviews, (0.7, 0.15, 0.15), seed=seed), note


@dataclass(frozen=True)
class Score:
    """k of n test items right, and the 95 % Wilson interval of k / n."""

    k: int
    n: int

    @property
    def accuracy(self) -> float:
        return self.k / self.n

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    def __str__(self) -> str:
        lo, hi = self.interval
        return f"{self.accuracy:6.1%} [{lo:6.1%}, {hi:6.1%}]  ({self.k}/{self.n})"


def score(predictions: Sequence[int], labels: Sequence[int]) -> Score:
    """How many predictions equal their label."""
    predictions, labels = list(predictions), list(labels)
    if len(predictions) != len(labels) or not labels:
        raise ValueError(f"predictions: expected one per label ({len(labels)}), got {len(predictions)}")
    return Score(sum(int(p) == int(y) for p, y in zip(predictions, labels)), len(labels))


def slice_scores(predictions: Sequence[int], reviews: Sequence[Review]) -> dict[str, Score]:
    """The score on each phenomenon of `reviews` (plain, intensifier, negation, contrast; "real" for UCI), and "all"."""
    predictions = list(predictions)
    if len(predictions) != len(reviews):
        raise ValueError(f"predictions: expected one per review ({len(reviews)}), got {len(predictions)}")
    out = {}
    for ph in dict.fromkeys(r.phenomenon for r in reviews):
        idx = [i for i, r in enumerate(reviews) if r.phenomenon == ph]
        out[ph] = score([predictions[i] for i in idx], [reviews[i].label for i in idx])
    out["all"] = score(predictions, [r.label for r in reviews])
    return out


def label_budget(train: Sequence[Review], n: int | None, seed: int) -> list[Review]:
    """n training reviews drawn without replacement, half of each label (n None or >= len: all of them)."""
    if n is None or n >= len(train):
        return list(train)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2 or n % 2:
        raise ValueError(f"n={n!r}: expected an even number of labels >= 2 (half per class), or None for all")
    rng = random.Random(seed)
    out = []
    for label in (0, 1):
        pool = [r for r in train if r.label == label]
        if len(pool) < n // 2:
            raise ValueError(f"n={n}: only {len(pool)} training reviews have label {label}; expected at least {n // 2}")
        out += rng.sample(pool, n // 2)
    rng.shuffle(out)
    return out


def learning_curve(method: Callable[[list[Review], int], list[int]], train: Sequence[Review], test: Sequence[Review],
                   budgets: Sequence[int | None], seeds: Sequence[int] = (0, 1, 2)) -> list[dict]:
    """method(train_subset, seed) -> predictions on `test`, for each budget (None = all) and seed ->
    rows {"budget", "seed", "k", "n", "accuracy", "low", "high"}."""
    labels = [r.label for r in test]
    rows = []
    for b in budgets:
        for s in seeds:
            sub = label_budget(train, b, seed=1000 * s + 1)
            sc = score(method(sub, s), labels)
            rows.append({"budget": len(sub), "seed": s, "k": sc.k, "n": sc.n, "accuracy": sc.accuracy,
                         "low": sc.interval[0], "high": sc.interval[1]})
    return rows


def summarize_curve(rows: list[dict]) -> list[dict]:
    """Per budget: the mean accuracy over seeds, the lowest and highest seed, and the Wilson interval
    at the mean (the test set's noise; the seeds' spread is the training sample's)."""
    out = []
    for b in sorted({r["budget"] for r in rows}):
        rs = [r for r in rows if r["budget"] == b]
        n = rs[0]["n"]
        mean = sum(r["accuracy"] for r in rs) / len(rs)
        lo, hi = wilson_interval(round(mean * n), n)
        out.append({"budget": b, "mean": mean, "min": min(r["accuracy"] for r in rs), "max": max(r["accuracy"] for r in rs),
                    "low": lo, "high": hi, "seeds": len(rs)})
    return out


def seed_summary(scores: Sequence[Score]) -> dict[str, float]:
    """Several seeds' scores on one test set -> {"mean", "min", "max", "low", "high"}: the mean accuracy,
    the seeds' range, and the Wilson interval at the mean (the test set's noise)."""
    if not scores or len({s.n for s in scores}) != 1:
        raise ValueError(f"scores: expected one or more Scores on the same test set, got {list(map(str, scores))}")
    n, mean = scores[0].n, sum(s.accuracy for s in scores) / len(scores)
    lo, hi = wilson_interval(round(mean * n), n)
    return {"mean": mean, "min": min(s.accuracy for s in scores), "max": max(s.accuracy for s in scores), "low": lo, "high": hi}


# ----------------------------------------------------------------------------- logistic regression
def words(text: str) -> list[str]:
    """Lower-cased words: letters, digits and apostrophes ("Don't buy it!" -> ["don't", "buy", "it"])."""
    return re.findall(r"[a-z0-9']+", text.lower())


class BagOfWords:
    """Presence (0/1) of each word of the training vocabulary (words seen at least `min_count` times)."""

    def __init__(self, texts: Sequence[str], min_count: int = 1):
        counts: dict[str, int] = {}
        for t in texts:
            for w in set(words(t)):
                counts[w] = counts.get(w, 0) + 1
        self.vocab = {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if c >= min_count))}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """texts -> X[N, V]; words outside the vocabulary are dropped."""
        X = torch.zeros(len(texts), len(self.vocab))
        for i, t in enumerate(texts):
            cols = [self.vocab[w] for w in words(t) if w in self.vocab]
            X[i, cols] = 1.0
        return X


def fit_logistic(X: torch.Tensor, y: torch.Tensor, l2: float = 1e-3, max_iter: int = 200) -> nn.Linear:
    """Binary logistic regression: minimise mean BCE(X w + b, y) + l2 / 2 * |w|^2 (b not penalised) with
    full-batch L-BFGS, from zeros (deterministic). X[N, D] float, y[N] in {0, 1} -> nn.Linear(D, 1)."""
    if X.dim() != 2 or y.shape != (X.size(0),):
        raise ValueError(f"X, y: expected shapes (N, D) and (N,), got {tuple(X.shape)} and {tuple(y.shape)}")
    if not l2 >= 0:
        raise ValueError(f"l2={l2!r}: expected a non-negative L2 strength")
    X, y = X.double(), y.double()
    lin = nn.Linear(X.size(1), 1).double()
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(lin(X).squeeze(1), y) + 0.5 * l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin.float()


def predict_logistic(lin: nn.Linear, X: torch.Tensor) -> list[int]:
    with torch.no_grad():
        return (lin(X.float()).squeeze(1) > 0).long().tolist()


def select_l2(Xtr: torch.Tensor, ytr: torch.Tensor, Xval: torch.Tensor, yval: torch.Tensor,
              grid: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1)) -> float:
    """The L2 strength of `grid` with the best validation accuracy (the smaller one on a tie)."""
    best = max(grid, key=lambda l2: (score(predict_logistic(fit_logistic(Xtr, ytr, l2), Xval), yval.tolist()).k, -l2))
    return float(best)


def labels_of(reviews: Sequence[Review]) -> torch.Tensor:
    return torch.tensor([float(r.label) for r in reviews])


def bow_method(l2: float = 1e-2, min_count: int = 1) -> Callable[[list[Review], Sequence[Review]], list[int]]:
    """A bag-of-words logistic regression as a function (train reviews, test reviews) -> test predictions."""
    def run(train: list[Review], test: Sequence[Review]) -> list[int]:
        bow = BagOfWords([r.text for r in train], min_count)
        return predict_logistic(fit_logistic(bow([r.text for r in train]), labels_of(train), l2), bow([r.text for r in test]))
    return run


# ----------------------------------------------------------------------------- VADER
def vader_predict(texts: Sequence[str]) -> list[int]:
    """VADER's rule-based lexicon (Hutto & Gilbert 2014), no training: positive when its compound score is >= 0
    (VADER calls |compound| < 0.05 neutral; a binary task must still pick a side, and ties go to positive)."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the VADER baseline needs the package vaderSentiment (in llmlab's lab extra): "
                                  "pip install vaderSentiment") from None
    sia = SentimentIntensityAnalyzer()
    return [int(sia.polarity_scores(t)["compound"] >= 0) for t in texts]


# ----------------------------------------------------------------------------- the cached fine-tuned MiniLM
@dataclass(frozen=True)
class FinetuneRecipe:
    """Everything that decides the fine-tuned MiniLM's weights (and its cache key)."""

    steps: int = 150  # AdamW steps: 2,400 sentences, 1.15 passes over the 2,088 of the training split
    batch_size: int = 16  # sentences per step
    lr: float = 1e-4  # peak learning rate (warmup 10 %, cosine to lr / 10)
    max_length: int = 48  # WordPiece tokens per sentence, [CLS] and [SEP] included (22 of the 2,088 training sentences are longer)
    pooling: str = "mean"  # "mean" or "cls"
    seed: int = 0  # head init and batch order
    data_seed: int = 0  # the split (lesson_data)
    n_test: int | None = None  # test sentences it is measured on (None: all)

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r}: expected one of {', '.join(POOLINGS)}")
        for name in ("steps", "batch_size", "max_length"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (3 if name == "max_length" else 1):
                raise ValueError(f"{name}={v!r}: expected a positive integer")


RECIPE = FinetuneRecipe()
FAST_RECIPE = FinetuneRecipe(steps=2, batch_size=4, max_length=24, n_test=16)  # the test suite's stand-in: seconds, not minutes


class SentimentClassifier:
    """A fine-tuned classifier with what it was measured at: `.predict(texts) -> [0 or 1]`, `.test_accuracy`, `.card`."""

    def __init__(self, model: EncoderClassifier, tok, card: dict):
        self.model, self.tok, self.card = model.eval(), tok, card

    @property
    def test_accuracy(self) -> float:
        return self.card["test_k"] / self.card["test_n"]

    def predict(self, texts: Sequence[str]) -> list[int]:
        if isinstance(texts, str):
            raise ValueError("texts: expected a list of strings, got one string")
        return predict_encoder(self.model, self.tok, list(texts), self.card["recipe"]["max_length"])


def finetuned_minilm_classifier(fast: bool | None = None, recipe: FinetuneRecipe | None = None, verbose: bool = True) -> SentimentClassifier:
    """all-MiniLM-L6-v2 fine-tuned (every weight) on lesson_data()'s training split: loaded from the course cache,
    or trained now (a few minutes on a CPU; FAST_RECIPE under the test suite) and cached. The card holds the
    recipe, the data note, the test score (k, n) and the training seconds."""
    from llmlab.models.minilm import load_minilm  # reads 90 MB: only when asked

    r = recipe or (FAST_RECIPE if (fast_mode() if fast is None else fast) else RECIPE)
    splits, note = lesson_data("auto", r.data_seed)
    source = "uci" if splits["test"][0].source != "procedural" else "procedural"
    key = hashlib.sha256(json.dumps({"format": FORMAT, "recipe": asdict(r), "source": source,
                                     "data": NPM_PACKAGE[2] if source == "uci" else "procedural-2000"}, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / "models" / f"minilm-sentiment-{key[:16]}.pt"
    say = print if verbose else (lambda *a, **k: None)
    encoder, tok = load_minilm()
    clf = EncoderClassifier(encoder, 2, r.pooling)
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved["card"]["key"] != key:
                raise ValueError("it holds another recipe")
            clf.load_state_dict(saved["state_dict"])
            say(f"loaded the fine-tuned MiniLM from the cache (trained in {saved['card']['train_seconds']:.0f} s)")
            return SentimentClassifier(clf, tok, saved["card"])
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            say(f"the cached classifier {path.name} is unusable ({str(e)[:120]}); training it again")
    say(f"fine-tuning all-MiniLM-L6-v2 on {len(splits['train'])} sentences ({r.steps} steps of {r.batch_size}; first use, then cached) ...",
        flush=True)
    t0 = time.perf_counter()
    outer = rng_state()
    try:
        torch.manual_seed(r.seed)
        clf = EncoderClassifier(encoder, 2, r.pooling)  # the head's init from the recipe's seed
    finally:
        set_rng_state(outer)
    obj = EncoderClassification([(ids, x.label) for ids, x in zip(encode_texts(tok, [x.text for x in splits["train"]], r.max_length), splits["train"])],
                                [(ids, x.label) for ids, x in zip(encode_texts(tok, [x.text for x in splits["val"]], r.max_length), splits["val"])],
                                tok.pad_id, seed=r.seed)
    metrics = fit(clf, obj, r.steps, r.batch_size, r.lr, r.seed)
    seconds = time.perf_counter() - t0
    test = splits["test"][: r.n_test] if r.n_test else splits["test"]
    sc = score(predict_encoder(clf, tok, [x.text for x in test], r.max_length), [x.label for x in test])
    card = {"key": key, "recipe": asdict(r), "data": note, "source": source, "test_k": sc.k, "test_n": sc.n,
            "val_accuracy": metrics["val_accuracy"], "train_seconds": seconds}
    write_atomic(path, lambda t: torch.save({"state_dict": clf.state_dict(), "card": card}, t))
    say(f"fine-tuned in {seconds:.0f} s: test accuracy {sc}; cached for lesson 13")
    return SentimentClassifier(clf, tok, card)

