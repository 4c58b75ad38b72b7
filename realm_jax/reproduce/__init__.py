"""Reproductions of the paper's tables: the plan of runs, running it, and the report."""
