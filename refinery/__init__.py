"""refinery: clean large image datasets without PyTorch at runtime."""

__version__ = "0.1.0"
