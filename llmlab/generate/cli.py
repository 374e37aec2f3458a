"""The `llmlab sample` command: text from a checkpoint written by `llmlab train`.

    llmlab sample --checkpoint out/smoke/ckpt.pt --prompt "The"
"""

from __future__ import annotations

from pathlib import Path

import torch

from llmlab.device import get_device
from llmlab.train.checkpoint import load_checkpoint, model_class, model_from_checkpoint


def configure_sample(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a ckpt.pt written by llmlab train")
    parser.add_argument("--prompt", default="\n", help="text to continue")
    parser.add_argument("--max_new_tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top_k", type=int, default=None)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", default="auto")


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """(model, tokenizer) from a checkpoint written by `llmlab train` or `train()`: the model is
    the class that was trained (a GPT, a SequenceClassifier, ...), in eval mode; the tokenizer
    is None when the run had none (train() without tokenizer=)."""
    return _model_and_tokenizer(load_checkpoint(path, map_location="cpu"), device)


def _model_and_tokenizer(ck: dict, device):
    from llmlab.text.tokenizers import Tokenizer

    tok = ck.get("extra", {}).get("tokenizer")
    return model_from_checkpoint(ck).to(device).eval(), Tokenizer.from_dict(tok) if tok is not None else None


def run_sample(args) -> int:
    from llmlab.generate.sampling import generate_text

    device = get_device(None if args.device == "auto" else args.device)
    ck = load_checkpoint(args.checkpoint, map_location="cpu")
    if model_class(ck) != "GPT":
        raise ValueError(f"checkpoint={args.checkpoint!r} holds a {model_class(ck)}; llmlab sample generates text with a GPT")
    if ck.get("extra", {}).get("tokenizer") is None:
        raise ValueError(f"checkpoint={args.checkpoint!r} holds no tokenizer (it was written by train() without tokenizer=)")
    model, tok = _model_and_tokenizer(ck, device)
    del ck  # the optimizer state is not needed to sample
    print(generate_text(model, tok, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                        top_k=args.top_k, top_p=args.top_p, seed=args.seed, device=device))
    return 0
