"""The `llmlab train` command, and the TOML run configs it reads (`llmlab sample`: llmlab.generate.cli).

    llmlab train --config configs/smoke.toml [--max_steps 10 --model.n_layer 2 ...] [--resume]
    torchrun --nproc_per_node=4 -m llmlab train --config configs/gpt2_small.toml   # same entry point

A config file has three sections: [model] (llmlab.models.gpt.GPTConfig), [data] (`DataConfig`)
and [train] (llmlab.train.TrainConfig). Every setting can be overridden on the command line;
a name that exists in two sections (block_size) needs its section (--train.block_size).
Unknown names and bad values stop the run before it starts, naming the setting.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from llmlab.config import check_types, is_int, load_toml, parse_value, reject_unknown
from llmlab.models.gpt import GPTConfig
from llmlab.train.loop import NonFiniteLoss, TrainConfig, train


@dataclass
class DataConfig:
    corpus: str = "python-docs"  # a name for llmlab.text.load_corpus, or a text file's path
    tokenizer: str = "char"  # "char" or "bpe"
    vocab_size: int | None = None  # bpe only: 256 bytes + merges
    val_fraction: float = 0.1  # the last part of the text validates

    def __post_init__(self) -> None:
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError(f"tokenizer={self.tokenizer!r}: expected 'char' or 'bpe'")
        if self.tokenizer == "bpe" and (not is_int(self.vocab_size) or self.vocab_size < 256):
            raise ValueError(f"vocab_size={self.vocab_size!r}: tokenizer='bpe' needs an integer vocab_size >= 256")
        if not isinstance(self.val_fraction, (int, float)) or not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction={self.val_fraction!r}: expected a number strictly between 0 and 1")


@dataclass
class RunConfig:
    model: dict = field(default_factory=dict)  # GPTConfig fields; vocab_size defaults to the tokenizer's
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


SECTIONS = {"model": GPTConfig, "data": DataConfig, "train": TrainConfig}


def load_config(path: str | Path | None = None, overrides: dict[str, str] | None = None) -> RunConfig:
    """Read a TOML file with [model], [data], [train] sections, then apply `overrides`
    ({"train.max_steps": "10", "model.n_layer": "2"}, values as TOML or bare strings)."""
    raw: dict = load_toml(path) if path is not None else {}
    for section in raw:
        if section not in SECTIONS or not isinstance(raw[section], dict):
            raise ValueError(f"config section [{section}]: expected only [{'], ['.join(SECTIONS)}]")
    for key, value in (overrides or {}).items():
        section, name = key.split(".", 1)
        raw.setdefault(section, {})[name] = parse_value(value)
    try:
        for section, cls in SECTIONS.items():
            reject_unknown(cls, raw.get(section, {}), section)
            check_types(cls, raw.get(section, {}), section)
        GPTConfig.from_dict(raw.get("model", {}))  # validate now, even if vocab_size comes later
        return RunConfig(dict(raw.get("model", {})), DataConfig(**raw.get("data", {})), TrainConfig(**raw.get("train", {})))
    except ValueError as e:
        raise ValueError(f"config={str(path)!r}: {e}" if path is not None else str(e)) from None


def override_keys() -> dict[str, str]:
    """Every accepted --flag -> "section.name". Bare names are accepted where only one section has them."""
    owners: dict[str, list[str]] = {}
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            owners.setdefault(f.name, []).append(section)
    keys = {f"{s}.{name}": f"{s}.{name}" for name, secs in owners.items() for s in secs}
    keys.update({name: f"{secs[0]}.{name}" for name, secs in owners.items() if len(secs) == 1})
    return keys


def configure_train(parser) -> None:
    parser.allow_abbrev = False  # --max must not silently mean --max_steps
    parser.add_argument("--config", required=True, help="a TOML file with [model], [data], [train] (see configs/)")
    parser.add_argument("--resume", action="store_true", help="continue from out_dir/ckpt.pt if it exists")
    group = parser.add_argument_group("settings", "override any config value: --max_steps 10, --model.n_layer 2 "
                                                  "(a name in two sections, like block_size, needs the section)")
    keys = override_keys()
    for name in sorted({k.split(".", 1)[1] for k in keys if "." in k} - set(keys)):  # in two sections: say which
        group.add_argument(f"--{name}", dest=f"ambiguous:{name}", default=None, metavar="VALUE", help=argparse.SUPPRESS)
    for flag, key in sorted(keys.items()):
        if flag == "resume":
            continue  # the --resume switch above
        shadowed = "." in flag and flag.split(".", 1)[1] in keys  # --train.max_steps: listed as --max_steps
        group.add_argument(f"--{flag}", dest=f"set:{key}", default=None, metavar="VALUE", help=argparse.SUPPRESS if shadowed else f"[{key.split('.')[0]}]")


def build_run(cfg: RunConfig):
    """Corpus -> tokenizer -> ids -> (GPTConfig, train ids, val ids, tokenizer)."""
    from llmlab.text.batches import train_val_split
    from llmlab.text.corpora import load_corpus
    from llmlab.text.tokenizers import BPETokenizer, CharTokenizer, Tokenizer

    text = load_corpus(cfg.data.corpus)
    tok_path = Path(cfg.train.out_dir) / "tokenizer.json" if cfg.train.out_dir else None
    if cfg.train.resume and tok_path and tok_path.is_file():
        tok = Tokenizer.load(tok_path)  # the ids of the run we continue
    elif cfg.data.tokenizer == "char":
        tok = CharTokenizer.train(text, byte_fallback=False)
    else:
        tok = BPETokenizer.train(text[: int(len(text) * (1 - cfg.data.val_fraction))], cfg.data.vocab_size)
    if tok_path and int(os.environ.get("RANK", "0")) == 0:  # one writer under torchrun, atomically
        tok_path.parent.mkdir(parents=True, exist_ok=True)
        tok.save(tok_path.with_suffix(".json.tmp"))
        os.replace(tok_path.with_suffix(".json.tmp"), tok_path)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    model_cfg = GPTConfig.from_dict({"vocab_size": tok.vocab_size, **cfg.model})
    if model_cfg.vocab_size < tok.vocab_size:
        raise ValueError(f"vocab_size={model_cfg.vocab_size}: the tokenizer has {tok.vocab_size} tokens; expected at least that")
    train_ids, val_ids = train_val_split(ids, cfg.data.val_fraction)
    return model_cfg, train_ids, val_ids, tok


def run_train(args) -> int:
    for k, v in vars(args).items():
        if k.startswith("ambiguous:") and v is not None:
            name = k.split(":", 1)[1]
            owners = [s for s, c in SECTIONS.items() if name in {f.name for f in fields(c)}]
            raise ValueError(f"--{name}: this setting exists in more than one section; write " + " or ".join(f"--{s}.{name}" for s in owners))
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("set:") and v is not None}
    if args.resume:
        overrides["train.resume"] = "true"
    cfg = load_config(args.config, overrides)
    model_cfg, train_ids, val_ids, tok = build_run(cfg)
    extra = {"data": asdict(cfg.data)}
    try:
        result = train(model_cfg, cfg.train, train_ids, val_ids, tokenizer=tok, extra_config=extra, handle_signals=True)
    except NonFiniteLoss as e:
        print(f"llmlab train: error: {e}", file=sys.stderr)
        return 1
    if result.stopped:
        return 128 + signal.SIGTERM if result.stopped == "SIGTERM" else 1
    if int(os.environ.get("RANK", "0")) == 0:
        where = f", checkpoint {result.checkpoint}" if result.checkpoint else ""
        print(f"done: {len(result.history)} steps, final validation loss {result.final_val_loss:.4f}{where}")
    return 0
