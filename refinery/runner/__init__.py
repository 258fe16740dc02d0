"""The torch-free side of refinery: onnxruntime sessions that embed images."""

from refinery.runner.session import Embedder, default_model_path

__all__ = ["Embedder", "default_model_path"]
