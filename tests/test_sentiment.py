"""llmlab.text.sentiment: the real UCI sentences through npm (checked by sha256, cached), their
absence reported with the procedural fallback, and the procedural set's known hard cases."""

from __future__ import annotations

import collections
import io
import json
import tarfile

import pytest
import torch

from llmlab.text import sentiment as S


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LLMLAB_DATA_DIR", raising=False)
    return tmp_path / "cache"


def test_uci_sentences_come_from_the_npm_tarball_checked_and_cached(fresh_cache, monkeypatch):
    rows = S.uci_sentences()  # npm pack: the registry (CI has it) or npm's own cache
    assert len(rows) == 2983  # 3 x 1,000 less 17 exact repeats within a site (once spaces are normalised)
    counts = collections.Counter((r.source, r.label) for r in rows)
    assert set(counts) == {(s, lab) for s in S.UCI_SOURCES for lab in (0, 1)}
    assert all(490 <= c <= 500 for c in counts.values())
    assert rows[1].text == "Good case, Excellent value." and rows[1].label == 1 and rows[1].source == "amazon"
    assert all(r.text == r.text.strip() and "  " not in r.text for r in rows)
    assert (fresh_cache / "data" / S.UCI_FILE).is_file()
    monkeypatch.setattr(S.shutil, "which", lambda name: None)  # the second call reads the cache: no npm needed
    assert S.uci_sentences() == rows


def test_without_npm_the_error_says_so_and_auto_falls_back_to_the_procedural_set(fresh_cache, monkeypatch):
    monkeypatch.setattr(S.shutil, "which", lambda name: None)
    with pytest.raises(S.SentimentDataUnavailable, match=r"npm is not installed.*load_sentiment\('procedural'\)"):
        S.uci_sentences()
    rows, note = S.load_sentiment("auto")
    assert note.startswith("the real sentences are unavailable (the UCI sentences come from the npm package sentiment@5.0.2")
    assert len(rows) == 2000 and {r.source for r in rows} == {"procedural"}
    with pytest.raises(S.SentimentDataUnavailable):
        S.load_sentiment("uci")


def test_a_tarball_with_another_checksum_is_refused(fresh_cache, tmp_path, monkeypatch):
    fake = tmp_path / "data"
    fake.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for s in S.UCI_SOURCES:
            blob = json.dumps([{"text": "planted", "class": 1}]).encode()
            info = tarfile.TarInfo(f"package/test/fixtures/{s}.json")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    (fake / "sentiment-5.0.2.tgz").write_bytes(buf.getvalue())
    monkeypatch.setenv("LLMLAB_DATA_DIR", str(fake))
    with pytest.raises(S.SentimentDataUnavailable, match="sha256 .* is not the expected 89302eb0"):
        S.uci_sentences()
    assert not (fresh_cache / "data" / S.UCI_FILE).exists()


def test_procedural_reviews_are_balanced_and_their_hard_cases_defeat_word_counts():
    rows = S.procedural_reviews(2000, seed=3)
    assert collections.Counter((r.phenomenon, r.label) for r in rows) == {(p, lab): 250 for p in S.PHENOMENA for lab in (0, 1)}
    assert rows == S.procedural_reviews(2000, seed=3) and rows != S.procedural_reviews(2000, seed=4)

    def words(r):
        return r.text.lower().replace(",", "").rstrip(".").split()

    # every adjective appears under both labels ("bad" in "was bad." and in "was not bad.")
    for adj in S.POSITIVE + S.NEGATIVE:
        assert {r.label for r in rows if adj in words(r)} == {0, 1}
    # so no weighting of word counts gets plain and negated reviews both right: a logistic regression on
    # bags of words, fitted to them all, cannot pass 75 % (good +, bad -, not good -, not bad + would need
    # w_not < 0 and w_not > 0 at once), while the plain ones alone it fits perfectly
    both = [r for r in rows if r.phenomenon in ("plain", "negation")]
    vocab = sorted({w for r in both for w in words(r)})
    X = torch.zeros(len(both), len(vocab))
    for i, r in enumerate(both):
        for w in words(r):
            X[i, vocab.index(w)] += 1
    y = torch.tensor([float(r.label) for r in both])

    def fit_accuracy(rows_mask):
        torch.manual_seed(0)
        w, b = torch.zeros(len(vocab), requires_grad=True), torch.zeros((), requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=0.1)
        for _ in range(300):
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(X[rows_mask] @ w + b, y[rows_mask]).backward()
            opt.step()
        return ((X[rows_mask] @ w + b > 0).float() == y[rows_mask]).float().mean().item()

    plain = torch.tensor([r.phenomenon == "plain" for r in both])
    assert fit_accuracy(plain) == 1.0
    assert fit_accuracy(torch.ones(len(both), dtype=torch.bool)) <= 0.76
    # contrast: a review and its mirror (the adjectives swapped) are the same bag of words with opposite labels
    r = next(r for r in rows if r.phenomenon == "contrast")
    a, b = r.text.rstrip(".").split(", but ")
    adj1, adj2 = a.split()[-1], b.split()[-1]
    mirror = a.rsplit(" ", 1)[0] + " " + adj2 + ", but " + b.rsplit(" ", 1)[0] + " " + adj1 + "."
    assert sorted(words(r)) == sorted(words(S.Review(mirror, 1 - r.label, "procedural", "contrast")))
    assert (adj2 in S.POSITIVE) == bool(r.label)  # the clause after "but" decides


def test_split_is_stratified_disjoint_and_complete():
    rows = S.procedural_reviews(800, seed=0)
    parts = S.split_reviews(rows, (0.5, 0.25, 0.25), seed=1)
    assert sorted(map(len, parts.values())) == [200, 200, 400]
    assert sorted(parts["train"] + parts["val"] + parts["test"], key=str) == sorted(rows, key=str)
    for part in parts.values():
        c = collections.Counter((r.phenomenon, r.label) for r in part)
        assert len(set(c.values())) == 1  # every (phenomenon, label) in the same share


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match=r"source='imdb': expected 'auto', 'uci' or 'procedural'"):
        S.load_sentiment("imdb")
    with pytest.raises(ValueError, match=r"n=0: expected a positive number"):
        S.procedural_reviews(0)
    with pytest.raises(ValueError, match=r"fractions=\(0.5, 0.6, 0.1\): expected three non-negative shares summing to 1"):
        S.split_reviews([], (0.5, 0.6, 0.1))
