"""Model Workbench: open, inspect, compress, license and publish trained neural networks."""

__version__ = "0.1.0"
