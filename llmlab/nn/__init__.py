"""Building blocks every model shares: attention, positions, norms, the MLP, the block, embeddings, hook points."""
