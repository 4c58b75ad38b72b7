"""MIPS over block embeddings: exact (sharded) and ScaNN searchers, corpus embedding, the index
store, the re-indexing job and the trainer-side watcher."""
