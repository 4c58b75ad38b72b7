"""Baselines beside REALM: retrievers that need no training."""
