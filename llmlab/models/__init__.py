"""Models built from llmlab.nn: the GPT and a sequence classifier on its trunk, a bidirectional
encoder with a masked-LM head (lesson 10), an encoder-decoder (lesson 11). `load_smollm2` puts real
pretrained weights (SmolLM2-135M-Instruct, read from a GGUF by llmlab.models.gguf) into the course's
GPT, `llmlab.models.minilm.load_minilm` all-MiniLM-L6-v2's into the encoder.

`MODELS` names every model class a checkpoint may hold, with its config class: a checkpoint
stores the class name and the config as a plain dict, and `build_model` makes the model again.
"""

from __future__ import annotations

from torch import nn

from llmlab.models.classifier import ClassifierConfig, SequenceClassifier
from llmlab.models.encoder import Encoder, EncoderConfig
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.models.seq2seq import EncoderDecoder, Seq2SeqConfig
from llmlab.models.smollm2 import load_smollm2

MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "GPT": (GPT, GPTConfig),
    "SequenceClassifier": (SequenceClassifier, ClassifierConfig),
    "Encoder": (Encoder, EncoderConfig),
    "EncoderDecoder": (EncoderDecoder, Seq2SeqConfig),
}


def build_model(config, name: str | None = None) -> nn.Module:
    """A fresh model from its config: a config object (GPTConfig -> GPT, ClassifierConfig ->
    SequenceClassifier, EncoderConfig -> Encoder, Seq2SeqConfig -> EncoderDecoder), or a plain dict
    with the class `name` (what a checkpoint stores)."""
    if isinstance(config, dict):
        if name not in MODELS:
            raise ValueError(f"name={name!r}: expected the model class of the config dict, one of {', '.join(MODELS)}")
        model_cls, config_cls = MODELS[name]
        return model_cls(config_cls.from_dict(config))
    for model_cls, config_cls in MODELS.values():
        if type(config) is config_cls:  # exact type: a ClassifierConfig is also a GPTConfig
            return model_cls(config)
    raise ValueError(f"model config: expected one of {', '.join(c.__name__ for _, c in MODELS.values())}, got {type(config).__name__}")


__all__ = ["MODELS", "GPT", "GPTConfig", "SequenceClassifier", "ClassifierConfig", "Encoder", "EncoderConfig", "EncoderDecoder", "Seq2SeqConfig",
           "build_model", "load_smollm2"]
