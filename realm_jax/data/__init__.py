"""Tokenization, corpora, masking and batching."""
