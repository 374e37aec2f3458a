"""Pictures and widgets, one module per chapter (tokens, embeddings, attention, positional,
training, sampling). Every interactive widget has a static matplotlib fallback, so a
notebook still shows something under nbval, in a PDF export and on the course website."""
