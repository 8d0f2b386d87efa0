"""PyTorch training, evaluation and ONNX export (extra [train])."""
