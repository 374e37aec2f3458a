"""llmlab: build a large language model from scratch, one notebook at a time.

The package holds the course's reference implementations (one concept per module, in
course order), the data loaders, the exercise checks and the grader. Notebooks import
from here; nothing is copied forward from one lesson to the next.

Layers, each importing only from those below it (tests/test_layers.py):

    config, cache, device                    settings, the download cache, devices and seeds
    text | nn                                tokenizers, corpora, batches | attention, positions, norms, MLP, block
    models                                   the GPT (encoders and encoder-decoders next)
    train, generate                          the training loop and `llmlab train` | sampling and `llmlab sample`
    viz, checks, course, grading, doctor,    plots and widgets, exercise checks, the notebooks, the grader,
    prepare                                  and `llmlab prepare` (the caches the lessons read)
    cli                                      the `llmlab` command

`import llmlab` needs nothing but Python: torch is imported when a name that needs it is used
(so `llmlab doctor` can say that torch is missing, and how to install it).
"""

__version__ = "0.1.0"

_FROM_DEVICE = ("fast_mode", "get_device", "seed_everything")
__all__ = ["__version__", *_FROM_DEVICE]


def __getattr__(name: str):
    if name in _FROM_DEVICE:
        from llmlab import device

        return getattr(device, name)
    raise AttributeError(f"module 'llmlab' has no attribute {name!r}")
