"""The `llmlab` command. Each sub-command lives in the module that owns the idea and exposes
`configure(parser)` and `run(args) -> int`; this file only wires them together.

    llmlab doctor                      is this machine ready for the course?
    llmlab course build [--check]      regenerate exercises/ from solutions/
    llmlab exercises                   list every exercise id, signature and points
    llmlab train --config FILE ...     train a GPT            (llmlab.train.cli)
    llmlab sample --checkpoint PATH    sample from a checkpoint (llmlab.generate.cli)
    llmlab grade SUBMISSIONS ...       grade a class           (llmlab.grading)
    llmlab prepare                     build the caches lessons 09+ read (llmlab.prepare)
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    ("doctor", "llmlab.doctor", "check that this machine has what the course needs"),
    ("course", "llmlab.course", "build the exercise notebooks from the solutions"),
    ("exercises", "llmlab.course", "list every exercise with its signature and points"),
    ("train", "llmlab.train.cli", "train a GPT from a TOML config"),
    ("sample", "llmlab.generate.cli", "generate text from a checkpoint"),
    ("grade", "llmlab.grading", "auto-grade a class of submitted notebooks"),
    ("prepare", "llmlab.prepare", "build the caches the second half reads (SmolLM2's weights, tokenizer vocabularies)"),
]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported (the others are listed by name and help text),
    so `llmlab doctor` starts without torch and `llmlab grade` without the training code."""
    from llmlab import __version__

    parser = argparse.ArgumentParser(prog="llmlab", description="llmlab: build a large language model from scratch")
    parser.add_argument("--version", action="version", version=f"llmlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            mod = importlib.import_module(module)
            getattr(mod, f"configure_{name}")(p)
            p.set_defaults(_run=getattr(mod, f"run_{name}"))
    return parser


def _command(argv: list[str]) -> str | None:
    """The sub-command named in argv (the first word that is one), if any."""
    names = {name for name, _, _ in COMMANDS}
    return next((a for a in argv if a in names), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:  # bad input: one clear line, no traceback
        print(f"llmlab {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
