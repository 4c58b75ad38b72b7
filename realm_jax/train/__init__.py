"""The training stages (one module each), their pmapped steps and the loop they share."""
