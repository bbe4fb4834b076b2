"""Evaluation: data sets, metrics, latency, and the side-by-side comparison of model variants."""
