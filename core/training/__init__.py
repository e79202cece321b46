"""Training: run configuration, augmentation, the engine and its events, one run end to end, and planning a
race of the regimes to a time budget from this machine's measured speed."""
