"""Generation: sampling from a model, and the `llmlab sample` command."""
