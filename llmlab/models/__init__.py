"""Models built from llmlab.nn: the GPT today; encoders and encoder-decoders next."""
