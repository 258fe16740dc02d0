"""`refinery train`: fine-tune a backbone into a compact embedding with a triplet loss on a
folder of identities, then export it as the runner's ONNX (extra [train]).

The second place, after refinery.export, allowed to import torch: data.py is torch-free,
model.py, loss.py and loop.py are not. Nothing on the runtime side imports this package.
"""
