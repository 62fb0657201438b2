"""Inference backends behind one interface: torch (reference), onnxruntime, openvino, tensorrt, tensorrt-rtx."""
