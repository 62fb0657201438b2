"""Inference backends behind one interface: torch (reference), onnxruntime, tensorrt."""
