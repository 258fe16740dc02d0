"""The PyTorch side of refinery: checkpoint -> ONNX (+ Core ML), with parity checks.

The only package besides training that may import torch; the runner never imports it.
Importing this package itself imports nothing heavy.
"""
