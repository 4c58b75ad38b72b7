"""Train states, pmapped steps, loops and checkpointing."""
