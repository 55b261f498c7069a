"""Behaviour-cloning datasets, models and training loops (PyTorch)."""
