"""Pure Flax (linen) modules."""
