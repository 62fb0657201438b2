"""sgjnd: deployment toolkit for SG-JND (Cao et al., ICIP 2024).

The top-level package imports only the lean core (numpy, OpenCV); torch, onnx, onnxruntime and tensorrt are imported
by the modules that need them, when they are used.
"""

from sgjnd.errors import SgjndError as SgjndError
from sgjnd.spec import ModelSpec as ModelSpec
from sgjnd.spec import Sidecar as Sidecar

__version__ = "0.1.0"
