"""Corpora and batches: load_corpus (offline, local files, bad names), the download path with
its checksum against a real HTTP server on 127.0.0.1, train_val_split and get_batch."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import threading

import pytest
import torch

import llmlab.text.corpora as data
from llmlab.text import CorpusUnavailable, get_batch, load_corpus, train_val_split


# ----------------------------------------------------------------------------- load_corpus
def test_python_docs_is_offline_prose_and_stable():
    text = load_corpus("python-docs")
    assert len(text) > 100_000 and "the" in text and text == load_corpus()  # the default corpus


def test_local_file_and_bad_name(tmp_path):
    p = tmp_path / "mine.txt"
    p.write_text("héllo wörld\n", encoding="utf-8")
    assert load_corpus(str(p)) == "héllo wörld\n"
    with pytest.raises(ValueError, match=r"corpus name='shakespear'.*'python-docs'.*'tinyshakespeare'"):
        load_corpus("shakespear")


# ----------------------------------------------------------------------------- downloads (loopback only)
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("LLMLAB_CACHE", str(cache))
    monkeypatch.delenv("LLMLAB_DATA_DIR", raising=False)
    monkeypatch.delenv("LLMLAB_TINYSHAKESPEARE_URL", raising=False)
    return cache


def unused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/tinyshakespeare.txt"  # closed again: nothing listens there


def test_download_verifies_and_caches(server, empty_cache, shakespeare_path):
    base, www = server
    (www / "tinyshakespeare.txt").write_bytes(shakespeare_path.read_bytes())
    text = load_corpus("tinyshakespeare", url=f"{base}/tinyshakespeare.txt")
    assert text == shakespeare_path.read_text(encoding="utf-8") and text.startswith("First Citizen:")
    cached = empty_cache / "tinyshakespeare.txt"
    assert data.sha256_file(cached) == data.TINYSHAKESPEARE_SHA256
    assert [p.name for p in empty_cache.iterdir()] == ["tinyshakespeare.txt"]  # no partial files
    # second time: from the cache, even with the network gone
    assert load_corpus("tinyshakespeare", url=unused_url()) == text


def test_url_from_the_environment(server, empty_cache, shakespeare_path, monkeypatch):
    base, www = server
    (www / "mirror.txt").write_bytes(shakespeare_path.read_bytes())
    monkeypatch.setenv("LLMLAB_TINYSHAKESPEARE_URL", f"{base}/mirror.txt")
    assert len(load_corpus("tinyshakespeare")) == len(shakespeare_path.read_text(encoding="utf-8"))


def test_wrong_checksum_saves_nothing(server, empty_cache):
    base, www = server
    (www / "tinyshakespeare.txt").write_text("To be, or not to be: a tampered mirror.\n")
    with pytest.raises(CorpusUnavailable, match=f"sha256 .* does not match the expected {data.TINYSHAKESPEARE_SHA256}"):
        load_corpus("tinyshakespeare", url=f"{base}/tinyshakespeare.txt")
    assert not empty_cache.exists() or list(empty_cache.iterdir()) == []


def test_corrupt_cache_is_fetched_again(server, empty_cache, shakespeare_path):
    base, www = server
    (www / "tinyshakespeare.txt").write_bytes(shakespeare_path.read_bytes())
    empty_cache.mkdir()
    (empty_cache / "tinyshakespeare.txt").write_text("half a file")
    assert load_corpus("tinyshakespeare", url=f"{base}/tinyshakespeare.txt").startswith("First Citizen:")


def test_unreachable_url_names_the_offline_alternative(empty_cache):
    url = unused_url()
    with pytest.raises(CorpusUnavailable, match=f"from {url}.*load_corpus\\('python-docs'\\)"):
        load_corpus("tinyshakespeare", url=url)
    assert not empty_cache.exists() or list(empty_cache.iterdir()) == []


def test_data_dir_is_used_before_any_download(empty_cache, shakespeare_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_DATA_DIR", str(shakespeare_path.parent))
    assert load_corpus("tinyshakespeare", url=unused_url()).startswith("First Citizen:")
    assert not (empty_cache / "tinyshakespeare.txt").exists()  # read in place, not copied


# ----------------------------------------------------------------------------- split and batches
def test_train_val_split_keeps_order():
    ids = torch.arange(100)
    tr, va = train_val_split(ids, 0.1)
    assert len(tr) == 90 and len(va) == 10 and torch.equal(torch.cat([tr, va]), ids)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match=f"val_fraction={bad}"):
            train_val_split(ids, bad)


def test_get_batch_shapes_and_shift():
    ids = torch.arange(50) * 3  # values differ from positions
    x, y = get_batch(ids, block_size=7, batch_size=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 7) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted left by one
    starts = x[:, 0] // 3
    assert torch.equal(x, ids[starts[:, None] + torch.arange(7)])
    assert torch.equal(y[:, -1], ids[starts + 7])


def test_get_batch_starts_are_uniform_and_cover_the_end():
    N, T, draws = 13, 3, 20_000  # starts 0..N-T-1 = 0..9; the last window's target is the last token
    x, y = get_batch(torch.arange(N), T, draws, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(x[:, 0], minlength=N)
    assert counts[N - T :].sum() == 0 and (counts[: N - T] > 0).all()
    assert y.max() == N - 1
    # each count ~ Binomial(20000, 1/10): mean 2000, sd 42; 5 sd = 212 (seeded, so never flaky)
    assert (counts[: N - T] - draws / (N - T)).abs().max() < 212


def test_get_batch_is_reproducible_and_checks_its_input():
    ids = torch.arange(40)
    a = get_batch(ids, 4, 3, generator=torch.Generator().manual_seed(5))
    b = get_batch(ids, 4, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0])
    with pytest.raises(ValueError, match=r"expected a 1-D tensor .* shape \(4, 10\)"):
        get_batch(ids.view(4, 10), 4, 3)
    with pytest.raises(ValueError, match="block_size=40: the data has only 40 tokens"):
        get_batch(ids, 40, 3)


def test_shared_development_copy_matches_its_checksum(shakespeare_path):
    sums = dict(reversed(line.split()) for line in (shakespeare_path.parent / "SHA256SUMS").read_text().splitlines() if line.strip())
    assert data.sha256_file(shakespeare_path) == sums["tinyshakespeare.txt"] == data.TINYSHAKESPEARE_SHA256
    assert os.path.getsize(shakespeare_path) > 1_000_000
