"""Text: tokenizers, corpora and batches (the bottom layer with llmlab.nn)."""

from llmlab.text.batches import get_batch, train_val_split
from llmlab.text.corpora import CORPORA, OFFLINE_CORPORA, CorpusUnavailable, load_corpus, python_docs

__all__ = ["CORPORA", "OFFLINE_CORPORA", "CorpusUnavailable", "get_batch", "load_corpus", "python_docs", "train_val_split"]
