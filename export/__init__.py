"""ONNX export, verification and deployment of trained policies."""
