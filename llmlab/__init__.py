"""llmlab: build a large language model from scratch, one notebook at a time.

The package holds the course's reference implementations (one concept per module, in
course order), the data loaders, the exercise checks and the grader. Notebooks import
from here; nothing is copied forward from one lesson to the next.

    tokenizers  -> data -> attention -> positional -> model -> sampling
"""

__version__ = "0.1.0"

from llmlab.device import fast_mode, get_device, seed_everything  # noqa: E402

__all__ = ["__version__", "fast_mode", "get_device", "seed_everything"]
