"""Instruction tuning the course's own GPT (lesson 13): a chat template, SFT examples, cached runs, evaluation.

The course model (`course_model("python-docs-chars")`) continues Python documentation one character at a
time. To make it answer, it is fine-tuned on conversations laid out with a chat template:

    <|user|>Where was Dorvan Kessil born?<|assistant|>Tavira<|end|>
    <|user|>Summarize:\\n{docstring body}<|assistant|>{its one-line summary}<|end|>

`<|user|>`, `<|assistant|>` and `<|end|>` are **special tokens**: three new ids after the 103 characters
(`ChatTokenizer`), so no text can spell them by accident; their embedding rows start at the mean of the
trained rows (`extend_vocab`; Hewitt 2021), which keeps the first logits of the new tokens ordinary.
`<|end|>` is the EOS: generation stops there. The padding id is EOS too (its labels are -100 anyway).

The training mix (`sft_examples`), one list drawn uniformly:
* biographies of every person of the knowledge base (llmlab.text.knowledge), several phrasings each, with
  the loss on every character (plain text: what the model must *read*);
* QA pairs of the trained people in the trained question templates, each 3 times (prompt-masked);
* 500 (body -> summary) pairs of the standard library's docstrings, from the train modules only (prompt-masked).

`SFTVariant` switches the two ablations of the lesson: the loss on the prompt too (`mask_prompt=False`,
"full-sequence"), and the EOS label removed (`eos_in_loss=False`), after which the model never learns to
stop. `instruct_model(variant)` trains one (200 steps of 12: one to three minutes on 2 cores, depending on what
else runs; fast mode: seconds) and caches it in
the course cache like the course models (key: the recipe, the base model's key and FORMAT).

Evaluation (generating, then scoring) is in llmlab.generate.instruct, a layer above.

Left out on purpose: multi-turn conversations and a system role, packing examples, sampling-based
evaluation, and the context beyond 256 characters (the base model was pretrained at 128; RoPE lets the
fine-tuning run at 256).
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from llmlab.cache import cache_dir, write_atomic
from llmlab.device import fast_mode
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.text.docstrings import DocPair, docstring_pairs, split_by_module
from llmlab.text.knowledge import KnowledgeBase, split_people
from llmlab.text.tokenizers import CharTokenizer, Tokenizer
from llmlab.train.checkpoint import load_checkpoint, model_from_checkpoint, rng_state, save_checkpoint, set_rng_state
from llmlab.train.course_models import course_model, course_model_card
from llmlab.train.loop import TrainConfig, Trainer
from llmlab.train.sft import IGNORE, InstructionTuning, build_example

USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
SPECIALS = (USER, ASSISTANT, END)
SUMMARY_PROMPT = "Summarize:\n"
FORMAT = 1  # bump when what a cached instruct model holds changes


# ----------------------------------------------------------------------------- the chat template
class ChatTokenizer(Tokenizer):
    """The course's CharTokenizer plus three special tokens: ids base.vocab_size + 0, 1, 2 for
    <|user|>, <|assistant|>, <|end|>. Unlike CharTokenizer, `encode` reads those strings as one id each."""

    def __init__(self, base: CharTokenizer):
        if not isinstance(base, CharTokenizer):
            raise ValueError(f"base: expected the course's CharTokenizer, got {type(base).__name__}")
        self.base = base
        self.user_id, self.assistant_id, self.eos_id = (base.vocab_size + i for i in range(3))
        self.pad_id = self.eos_id
        self.vocab_size = base.vocab_size + len(SPECIALS)
        self._split = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")

    def knows(self, text: str) -> bool:
        """True when every character of `text` has an id (the course tokenizer has no byte fallback)."""
        return all(c in self.base.stoi for c in text)

    def encode(self, text: str) -> list[int]:
        out = []
        for part in self._split.split(text):
            if part in SPECIALS:
                out.append(self.base.vocab_size + SPECIALS.index(part))
            elif part:
                out += self.base.encode(part)
        return out

    def decode(self, ids) -> str:
        n, out = self.base.vocab_size, []
        for i in ids:
            i = int(i)
            out.append(SPECIALS[i - n] if n <= i < self.vocab_size else self.base.decode([i]))
        return "".join(out)

    def prompt(self, user: str) -> list[int]:
        """The ids of `<|user|>{user}<|assistant|>`: what the model reads before it answers."""
        return [self.user_id, *self.base.encode(user), self.assistant_id]

    def to_dict(self) -> dict:
        return {"type": "chat", "base": self.base.to_dict()}


def extend_vocab(model: GPT, n_new: int, block_size: int | None = None) -> GPT:
    """A copy of `model` with n_new more token ids (rows initialised to the mean of the old embedding rows)
    and, optionally, another block_size (RoPE has no learned positions, so any length loads)."""
    cfg = model.config
    if cfg.pos_encoding != "rope" and block_size not in (None, cfg.block_size):
        raise ValueError(f"block_size={block_size}: only a RoPE model can change its context; this one uses {cfg.pos_encoding!r}")
    if isinstance(n_new, bool) or not isinstance(n_new, int) or n_new < 0:
        raise ValueError(f"n_new={n_new!r}: expected a number of new tokens >= 0")
    new_cfg = GPTConfig(**{**cfg.to_dict(), "vocab_size": cfg.vocab_size + n_new, "block_size": block_size or cfg.block_size})
    new = GPT(new_cfg)
    sd = model.state_dict()
    old = sd["transformer.wte.weight"]  # (V, C)
    sd["transformer.wte.weight"] = torch.cat([old, old.mean(0, keepdim=True).expand(n_new, -1)])  # (V + n_new, C)
    if "lm_head.weight" in sd:
        head = sd["lm_head.weight"]
        sd["lm_head.weight"] = sd["transformer.wte.weight"] if cfg.tied else torch.cat([head, head.mean(0, keepdim=True).expand(n_new, -1)])
    new.load_state_dict(sd)
    return new


# ----------------------------------------------------------------------------- examples
@dataclass(frozen=True)
class SFTVariant:
    mask_prompt: bool = True  # the loss on the response only (False: on the prompt too, "full-sequence")
    eos_in_loss: bool = True  # the <|end|> label is learned (False: -100, the model never learns to stop)

    @property
    def name(self) -> str:
        return {(True, True): "masked", (False, True): "full-sequence", (True, False): "no-eos", (False, False): "full-no-eos"}[
            (self.mask_prompt, self.eos_in_loss)]


VARIANTS = {v.name: v for v in (SFTVariant(), SFTVariant(mask_prompt=False), SFTVariant(eos_in_loss=False))}


def make_example(prompt_ids: list[int], response_ids: list[int], eos_id: int, variant: SFTVariant = SFTVariant()):
    """`llmlab.train.sft.build_example`, then the EOS label dropped when the variant says so."""
    x, y = build_example(prompt_ids, response_ids, eos_id, mask_prompt=variant.mask_prompt)
    if not variant.eos_in_loss:
        y[-1] = IGNORE
    return x, y


def summary_user_text(body: str, max_chars: int) -> str:
    """The user turn of a summarisation example: the instruction and the body, cut to max_chars characters."""
    return SUMMARY_PROMPT + " ".join(body.split())[:max_chars]


def lead_sentence(body: str) -> str:
    """The lead baseline: the body's first sentence (up to the first '. ' or blank line), whitespace collapsed."""
    first = body.strip().split("\n\n")[0]
    text = " ".join(first.split())
    m = re.search(r"\.(\s|$)", text)
    return text[: m.start() + 1] if m else text


@functools.lru_cache(maxsize=1)
def _stdlib_pairs() -> tuple[DocPair, ...]:
    """The standard library's pairs; parsing it takes seconds, so they are kept in the course cache, one file per
    Python release (the pairs change between releases), and in memory once read."""
    path = cache_dir() / "data" / f"stdlib-docstrings-{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}.json"
    try:
        return tuple(DocPair(**d) for d in json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pairs = docstring_pairs()
        write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps([asdict(p) for p in pairs]), encoding="utf-8"))
        return tuple(pairs)


def docstring_split(tok: ChatTokenizer, seed: int = 0) -> tuple[list[DocPair], list[DocPair]]:
    """(train, test) docstring pairs split by module, keeping the pairs the tokenizer can spell."""
    train, test = split_by_module(list(_stdlib_pairs()), 0.15, seed)
    keep = [p for p in train if tok.knows(p.summary + p.body)], [p for p in test if tok.knows(p.summary + p.body)]
    return keep


@dataclass(frozen=True)
class InstructRecipe:
    """Everything that decides an instruct model's weights (and so its cache key)."""

    variant: SFTVariant = SFTVariant()
    base: str = "python-docs-chars"  # the course model fine-tuned
    n_people: int = 40  # the knowledge base (llmlab.text.knowledge.KnowledgeBase.generate)
    held_out_fraction: float = 0.25  # people never asked about in training
    biographies: int = 8  # phrasings of each person's biography in the mix
    qa_repeats: int = 3  # each drilled QA pair is this many times in the mix (its weight against the summaries)
    max_summaries: int = 500  # docstring pairs in the mix (a seeded sample of the train modules' pairs)
    block_size: int = 256  # the fine-tuning context (the base model saw 128)
    body_chars: int = 160  # a docstring body is cut to this many characters
    steps: int = 200
    batch_size: int = 12
    lr: float = 2e-3
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


FAST_RECIPE = dict(steps=8, batch_size=4, biographies=2)


def default_recipe(variant: str | SFTVariant = "masked", fast: bool | None = None) -> InstructRecipe:
    v = VARIANTS[variant] if isinstance(variant, str) else variant
    if isinstance(variant, str) and variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: expected one of {', '.join(VARIANTS)}")
    return InstructRecipe(variant=v, **(FAST_RECIPE if (fast_mode() if fast is None else fast) else {}))


def sft_examples(tok: ChatTokenizer, kb: KnowledgeBase, r: InstructRecipe) -> dict:
    """The training mix and what is evaluated: {"train": [(x, y)], "val": [(x, y)], "trained_people",
    "held_out_people", "docs_train", "docs_test"}; see the module docstring."""
    rng = random.Random(r.seed)
    trained, held_out = split_people(kb, r.held_out_fraction, r.seed)
    v, eos = r.variant, tok.eos_id
    docs = []
    for person in kb.people:
        for _ in range(r.biographies):
            ids = tok.encode(kb.biography(person, rng))
            docs.append(make_example(ids[:1], ids[1:], eos, v))  # plain text: every character is learned
    for f in kb.facts:
        if kb.relations[f.relation].subject_kind != "person":
            ids = tok.encode(kb.statement(f, rng.randrange(2)))
            docs.append(make_example(ids[:1], ids[1:], eos, v))
    qa = [make_example(tok.prompt(q.question), tok.encode(q.answer), eos, v) for q in kb.questions(trained, held_out_template=False)]
    d_train, d_test = docstring_split(tok, r.seed)
    summ = []
    for p in random.Random(r.seed).sample(d_train, min(r.max_summaries, len(d_train))):
        x, y = make_example(tok.prompt(summary_user_text(p.body, r.body_chars)), tok.encode(p.summary), eos, v)
        if len(x) <= r.block_size:
            summ.append((x, y))
    val = [make_example(tok.prompt(summary_user_text(p.body, r.body_chars)), tok.encode(p.summary), eos, v) for p in d_test[:64]]
    val = [(x, y) for x, y in val if len(x) <= r.block_size]
    return {"train": docs + qa * r.qa_repeats + summ, "val": val, "trained_people": trained, "held_out_people": held_out, "docs_train": d_train,
            "docs_test": d_test, "counts": {"documents": len(docs), "qa": len(qa) * r.qa_repeats, "summaries": len(summ)}}


# ----------------------------------------------------------------------------- training and the cache
def recipe_key(r: InstructRecipe, base_key: str) -> str:
    h = hashlib.sha256(json.dumps({"format": FORMAT, "recipe": r.to_dict(), "base": base_key}, sort_keys=True).encode())
    return h.hexdigest()


def instruct_model(variant: str | SFTVariant | InstructRecipe = "masked", fast: bool | None = None, verbose: bool = True):
    """(model in eval mode, ChatTokenizer, card) of an instruction-tuned course model: from the cache, or trained
    now (printing so) and cached. card: recipe, key, train_seconds, val_loss, the mix's counts."""
    r = variant if isinstance(variant, InstructRecipe) else default_recipe(variant, fast)
    fast = fast_mode() if fast is None else fast
    base_key = course_model_card(r.base, fast)["key"]
    key = recipe_key(r, base_key)
    path = cache_dir() / "models" / f"instruct-{r.variant.name}{'-fast' if fast else ''}-{key[:16]}.pt"
    say = print if verbose else (lambda *a, **k: None)
    if path.is_file():
        try:
            ck = load_checkpoint(path)
            if ck["extra"]["card"]["key"] != key:
                raise ValueError("it holds another recipe")
            outer = rng_state()
            model = model_from_checkpoint(ck).eval()
            set_rng_state(outer)
            card = ck["extra"]["card"]
            say(f"loaded the instruct model {r.variant.name!r} from the cache (trained in {card['train_seconds']:.0f} s)")
            return model, ChatTokenizer(Tokenizer.from_dict(ck["extra"]["base_tokenizer"])), card
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            say(f"the cached instruct model {path.name} is unusable ({str(e)[:120]}); training it again")
    base, base_tok = course_model(r.base, fast, verbose=verbose)
    tok = ChatTokenizer(base_tok)
    say(f"fine-tuning the instruct model {r.variant.name!r} (first use, then cached): {r.steps} steps of {r.batch_size} ...", flush=True)
    t0, outer = time.perf_counter(), rng_state()
    try:
        torch.manual_seed(r.seed)
        model = extend_vocab(base, len(SPECIALS), r.block_size)
        data = sft_examples(tok, KnowledgeBase.generate(r.n_people, r.seed), r)
        tc = TrainConfig(max_steps=r.steps, batch_size=r.batch_size, lr=r.lr, min_lr=r.lr / 10, warmup_steps=max(1, r.steps // 20),
                         beta2=0.99, weight_decay=0.1, eval_interval=r.steps, eval_iters=4, device="cpu", seed=r.seed, progress=False)
        result = Trainer(model, InstructionTuning(data["train"], data["val"], tok.pad_id, seed=r.seed), tc).fit()
    finally:
        set_rng_state(outer)
    seconds = time.perf_counter() - t0
    model = result.model.eval()
    card = {"key": key, "recipe": r.to_dict(), "variant": r.variant.name, "train_seconds": float(seconds),
            "val_loss": float(result.final_val_loss), "counts": data["counts"]}
    state = {"model": model.state_dict(), "config": {"model": model.config.to_dict(), "model_class": "GPT"},
             "extra": {"card": card, "base_tokenizer": base_tok.to_dict()}}
    save_checkpoint(state, path)
    say(f"fine-tuned in {seconds:.0f} s: validation loss {result.final_val_loss:.3f} per response token; cached")
    return model, tok, card
