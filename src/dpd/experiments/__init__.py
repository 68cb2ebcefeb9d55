"""Experiment orchestration, kept apart from the algorithm: sweeps (process pool / Ray Tune) and reports."""
