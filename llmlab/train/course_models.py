"""The course's own trained models: a fixed recipe per name, trained once, then loaded from the cache.

    from llmlab.train import course_model
    model, tok = course_model("python-docs-chars")   # first use: trains it (about 100 s on a 2-core CPU) and caches it
    model, tok = course_model("python-docs-chars")   # every later use, in any lesson: loads it (under a second)

Lesson 08 samples from it and later lessons reuse it; whichever runs first trains it, so no lesson
depends on another having been run. Under the test suite (`llmlab.fast_mode()`, or `fast=True`) a
much shorter run of the same model stands in: it trains in seconds and has its own cache file.

A `Recipe` is everything that decides the weights: the corpus, the tokenizer, the model
(`GPTConfig` fields) and the run (`TrainConfig` fields, the seed included). A recipe with
objective="masked-lm" trains an encoder instead (`EncoderConfig` fields, llmlab.train.masked_lm;
lesson 10's "python-docs-chars-mlm", with the GPT's recipe), its vocabulary the tokenizer's plus
BERT's four special tokens. The cache key is the
sha256 of the recipe as JSON, of the corpus text (python-docs is the running Python's own help
texts, so it changes between Python releases) and of this module's FORMAT: change any of them and
a new model is trained instead of a stale one loaded. The file,
`cache_dir() / "models" / f"{name}-{key[:16]}.pt"`, is an ordinary llmlab checkpoint
(`llmlab.train.checkpoint`: written atomically, read with weights_only=True, and
`llmlab sample --checkpoint FILE` runs it); its `extra` holds the tokenizer and a `course_model`
entry (recipe, key, validation loss, training seconds). A file that cannot be read, or that holds
another recipe, is reported and trained again, never crashed on.

The caller's random state is left as it was: training seeds the generators (tc.seed), and a
notebook must not draw differently after a first (training) run than after a cached one.

Left out on purpose: downloading weights (the course trains its own; lesson 09 loads real ones),
a lock between two processes training the same recipe at once (both train, and the atomic write
keeps the file whole), and evicting old cache files.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from llmlab.cache import cache_dir
from llmlab.device import fast_mode
from llmlab.models.encoder import EncoderConfig
from llmlab.models.gpt import GPTConfig
from llmlab.text import load_corpus, train_val_split
from llmlab.text.masking import SpecialTokens
from llmlab.text.tokenizers import BPETokenizer, CharTokenizer, Tokenizer
from llmlab.train.checkpoint import load_checkpoint, model_from_checkpoint, rng_state, save_checkpoint, set_rng_state
from llmlab.train.loop import TrainConfig, Trainer
from llmlab.train.masked_lm import MaskedLM

FORMAT = 1  # bump when what a cached file holds changes: every cached course model is then retrained


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a course model's weights (and so its cache key)."""

    name: str  # the cache file's stem, and what messages call it
    corpus: str  # a name for llmlab.text.load_corpus ("python-docs" ships with Python: offline)
    tokenizer: str  # "char" (one id per character seen) or "bpe-N" (byte-level BPE, vocabulary N, trained on the train split)
    model: dict  # GPTConfig fields (EncoderConfig's for "masked-lm"), all but vocab_size (the tokenizer's)
    train: dict  # TrainConfig fields (block_size = the training context; None for "masked-lm": the model's)
    val_fraction: float = 0.1  # the last tenth of the corpus validates (llmlab.text.train_val_split)
    objective: str = "next-token"  # "next-token" (a GPT) or "masked-lm" (an Encoder, llmlab.train.masked_lm; lesson 10)
    about: str = field(default="", compare=False)  # one line for people; not part of the key

    def __post_init__(self) -> None:
        if not (self.tokenizer == "char" or (self.tokenizer.startswith("bpe-") and self.tokenizer[4:].isdigit() and int(self.tokenizer[4:]) > 256)):
            raise ValueError(f"tokenizer={self.tokenizer!r}: expected 'char' or 'bpe-N' with N > 256")
        if "vocab_size" in self.model:
            raise ValueError("model: leave out vocab_size (it is the tokenizer's)")
        if self.objective not in ("next-token", "masked-lm"):
            raise ValueError(f"objective={self.objective!r}: expected 'next-token' or 'masked-lm'")
        (GPTConfig if self.objective == "next-token" else EncoderConfig)(vocab_size=2, **self.model)  # validate the fields now
        TrainConfig(**self.train)

    def key_material(self) -> dict:
        d = asdict(self)
        d.pop("about")
        if d["objective"] == "next-token":
            d.pop("objective")  # the key of every recipe from before the field existed stays what it was
        return d


# The course model. Character level, like lessons 06 and 07, so its samples read letter by letter. Chosen on
# 2026-12-01 from these runs (python-docs, RoPE, lr 2e-3 -> 2e-4, beta2 0.99; validation loss in nats per character,
# bits per character for BPE; context 128 and batch 16 unless named):
#   4 x 128:  500 steps 1.406, 900 steps 1.263 (context 64, batch 12, 2,400 steps: 1.267)
#   4 x 96:   700 steps 1.376, 900 steps 1.313, 2,000 steps 1.180   <- this recipe
#   4 x 64:   1,400 steps 1.292, 2,000 steps 1.229, 4,000 steps 1.193;   6 x 64, 1,400 steps: 1.267
#   byte-level BPE, 4 x 128, context 64: 512 tokens 1.854 bits/char, 1,024 tokens 1.739 at 1,200 steps and 1.782 at
#   1,800 (it overfits this small corpus), against 1.822 bits/char for the 4 x 128 character model at 900 steps,
#   with 2-2.5x its non-words at temperature 0.8.
# On the 2-core development machine, quiet: 45 ms per step, trained in 96-102 s (lesson 08 shows it), so lesson 08's
# full run, training included, takes under 2 minutes there. On the same machine shared with other heavy jobs,
# steps ran 3-8x slower: time it where you train.
RECIPES: dict[str, Recipe] = {
    "python-docs-chars": Recipe(
        name="python-docs-chars",
        corpus="python-docs",
        tokenizer="char",
        model=dict(block_size=128, n_layer=4, n_head=4, n_embd=96, dropout=0.0, bias=False, pos_encoding="rope"),
        train=dict(max_steps=2000, batch_size=16, block_size=128, lr=2e-3, min_lr=2e-4, warmup_steps=100, beta2=0.99,
                   weight_decay=0.1, grad_clip=1.0, eval_interval=500, eval_iters=20, device="auto", dtype="fp32", seed=1337,
                   progress=False),
        about="a 4-layer, width-96 character GPT (RoPE, context 128) trained on python-docs",
    ),
    # Lesson 10's encoder: the course GPT's recipe (shapes, corpus, characters, steps, batch, schedule), bidirectional and
    # trained to fill in masked characters (15 %, 80/10/10, dynamic), so that the two compare at equal compute. Validation
    # accuracy on masked characters (2026-12-01): 1,200 steps 60.7 %, 2,000 steps 65.3 %. A step costs what the GPT's does;
    # on the 2-core machine shared with two other jobs and one thread, 1,200 steps took 192 s and 2,000 took 301 s.
    "python-docs-chars-mlm": Recipe(
        name="python-docs-chars-mlm",
        corpus="python-docs",
        tokenizer="char",
        objective="masked-lm",
        model=dict(block_size=128, n_layer=4, n_head=4, n_embd=96, dropout=0.0, bias=False, pos_encoding="rope"),
        train=dict(max_steps=2000, batch_size=16, lr=2e-3, min_lr=2e-4, warmup_steps=100, beta2=0.99, weight_decay=0.1, grad_clip=1.0,
                   eval_interval=500, eval_iters=20, device="auto", dtype="fp32", seed=1337, progress=False),
        about="a 4-layer, width-96 character encoder (RoPE, 128 positions) trained as a masked LM on python-docs",
    ),
}

# What fast mode (the test suite) uses instead: the same kind of model, small enough to train in seconds.
FAST_RECIPES: dict[str, Recipe] = {
    "python-docs-chars": Recipe(
        name="python-docs-chars-fast",
        corpus="python-docs",
        tokenizer="char",
        model=RECIPES["python-docs-chars"].model,  # the same shapes, so a lesson prints the same shapes in both modes
        train={**RECIPES["python-docs-chars"].train, "max_steps": 30, "batch_size": 4, "warmup_steps": 3, "eval_interval": 30,
               "eval_iters": 2},
        about="the fast-mode stand-in: the same model, 30 steps of 4 windows",
    ),
    "python-docs-chars-mlm": Recipe(
        name="python-docs-chars-mlm-fast",
        corpus="python-docs",
        tokenizer="char",
        objective="masked-lm",
        model=RECIPES["python-docs-chars-mlm"].model,
        train={**RECIPES["python-docs-chars-mlm"].train, "max_steps": 30, "batch_size": 4, "warmup_steps": 3, "eval_interval": 30,
               "eval_iters": 2},
        about="the fast-mode stand-in: the same encoder, 30 steps of 4 windows",
    ),
}


def recipe(name: str = "python-docs-chars", fast: bool | None = None) -> Recipe:
    """The recipe called `name`: the small stand-in when `fast` (None: `llmlab.fast_mode()`)."""
    table = FAST_RECIPES if (fast_mode() if fast is None else fast) else RECIPES
    if name not in table:
        raise ValueError(f"name={name!r}: expected one of the course models {', '.join(map(repr, RECIPES))}")
    return table[name]


def recipe_key(r: Recipe, corpus_text: str) -> str:
    """The cache key: sha256 over the recipe, the corpus text and FORMAT (hex)."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "recipe": r.key_material()}, sort_keys=True).encode("utf-8"))
    h.update(hashlib.sha256(corpus_text.encode("utf-8")).digest())
    return h.hexdigest()


def course_model_path(r: Recipe, key: str) -> Path:
    return cache_dir() / "models" / f"{r.name}-{key[:16]}.pt"


def course_model(name: str | Recipe = "python-docs-chars", fast: bool | None = None, device: str | torch.device = "cpu",
                 verbose: bool = True) -> tuple[nn.Module, Tokenizer]:
    """(model in eval mode on `device`, tokenizer) for a course model: loaded from the cache, or
    trained now and cached (printing that, and how long it took). `name` may be a Recipe."""
    ck = course_checkpoint(name, fast, verbose)
    with _caller_rng_kept():  # building the model draws a random initialisation before loading the weights
        model = model_from_checkpoint(ck).to(device).eval()
    return model, Tokenizer.from_dict(ck["extra"]["tokenizer"])


def course_model_card(name: str | Recipe = "python-docs-chars", fast: bool | None = None) -> dict:
    """What the cached run reports (training it first if needed): recipe, key, val_loss, train_seconds, parameters."""
    return dict(course_checkpoint(name, fast, verbose=False)["extra"]["course_model"])


def course_checkpoint(name: str | Recipe = "python-docs-chars", fast: bool | None = None, verbose: bool = True) -> dict:
    """The course model's checkpoint dict (llmlab's format), from the cache or freshly trained."""
    r = name if isinstance(name, Recipe) else recipe(name, fast)
    text = load_corpus(r.corpus)
    key = recipe_key(r, text)
    path = course_model_path(r, key)
    say = print if verbose else (lambda *a, **k: None)
    if path.is_file():
        try:
            ck = load_checkpoint(path)
            card = ck["extra"]["course_model"]
            if card["key"] != key:
                raise ValueError(f"it holds another recipe (key {card['key'][:16]}, expected {key[:16]})")
            with _caller_rng_kept():
                model_from_checkpoint(ck)  # the weights fit the model this llmlab builds
            say(f"loaded the course model {r.name!r} from the cache (trained in {card['train_seconds']:.0f} s; "
                f"validation loss {card['val_loss']:.3f})")
            return ck
        except (ValueError, KeyError, TypeError, RuntimeError) as e:  # unreadable, truncated, stale: train again
            say(f"the cached course model {path.name} is unusable ({str(e)[:160]}); training it again")
    return _train(r, text, key, path, say)


@contextmanager
def _caller_rng_kept():
    """Whatever runs inside (training seeds the generators, a model's init draws from them) leaves
    the caller's random state as it found it: a notebook draws the same after a first, training
    run as after a cached one."""
    outer = rng_state()
    try:
        yield
    finally:
        set_rng_state(outer)


def _tokenizer(r: Recipe, train_text: str) -> Tokenizer:
    if r.tokenizer == "char":
        return CharTokenizer.train(train_text, byte_fallback=False)
    return BPETokenizer.train(train_text, int(r.tokenizer[4:]))


def _train(r: Recipe, text: str, key: str, path: Path, say) -> dict:
    tc = TrainConfig(**r.train)
    say(f"training the course model {r.name!r} (first use, then cached): {r.about or r.name}, "
        f"{tc.max_steps} steps ...", flush=True)
    t0 = time.perf_counter()
    with _caller_rng_kept():  # Trainer seeds the global generators (tc.seed)
        if r.tokenizer == "char":
            tok = _tokenizer(r, text)  # every character of the corpus (validation text included) gets an id
        else:
            tok = _tokenizer(r, text[: int(len(text) * (1 - r.val_fraction))])  # merges learned on the train split only
        ids = torch.tensor(tok.encode(text), dtype=torch.long)  # (N,)
        train_ids, val_ids = train_val_split(ids, r.val_fraction)
        data = {"data": {"corpus": r.corpus, "tokenizer": r.tokenizer, "val_fraction": r.val_fraction}}
        if r.objective == "masked-lm":  # the encoder: [PAD] [CLS] [SEP] [MASK] after the tokenizer's ids (lesson 10)
            specials = SpecialTokens.after(tok.vocab_size)
            cfg = EncoderConfig(vocab_size=specials.vocab_size, **r.model)
            objective = MaskedLM(train_ids, val_ids, specials, cfg.block_size, seed=tc.seed)
            trainer = Trainer(cfg, objective, tc, tokenizer=tok, extra_config=data)
        else:
            cfg = GPTConfig(vocab_size=tok.vocab_size, **r.model)
            trainer = Trainer(cfg, tc, train_ids, val_ids, tokenizer=tok, extra_config=data)
        result = trainer.fit()
        seconds = time.perf_counter() - t0
        state = trainer.state_dict()
    state["extra"]["course_model"] = {"name": r.name, "key": key, "recipe": r.key_material(), "val_loss": float(result.final_val_loss),
                                      **({"val_accuracy": float(result.metrics["val_accuracy"])} if "val_accuracy" in result.metrics else {}),
                                      "train_seconds": float(seconds), "parameters": int(trainer.model.num_parameters())}
    save_checkpoint(state, path)
    say(f"trained in {seconds:.0f} s: validation loss {result.final_val_loss:.3f} after {tc.max_steps} steps; cached for the next lessons")
    return state
