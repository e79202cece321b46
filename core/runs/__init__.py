"""Runs: the run store (one folder per run), evaluating a saved run, its per-image predictions, and the
tables that compare runs."""
