"""Reduced-precision model preparation: INT8 calibration (QDQ graphs for TensorRT and ONNX Runtime CPU) and FP16.

Needs onnx and onnxruntime (``pip install 'sgjnd[onnx,ort]'``); they are imported only when a function runs.

Example:
    >>> from sgjnd.calibration import CalibrateConfig, calibrate_model
    >>> outcome = calibrate_model(Path("model"), images=Path("photos"), config=CalibrateConfig(precision="int8"))
    >>> print(outcome.format())
"""

from sgjnd.calibration.cache import CalibrationCache as CalibrationCache
from sgjnd.calibration.cache import cache_key as cache_key
from sgjnd.calibration.cache import key_parts as key_parts
from sgjnd.calibration.fp16 import Fp16Result as Fp16Result
from sgjnd.calibration.fp16 import fp16_from_onnx as fp16_from_onnx
from sgjnd.calibration.pipeline import CalibrateConfig as CalibrateConfig
from sgjnd.calibration.pipeline import CalibrationOutcome as CalibrationOutcome
from sgjnd.calibration.pipeline import calibrate_model as calibrate_model
from sgjnd.calibration.quantize import QdqSummary as QdqSummary
from sgjnd.calibration.quantize import QuantizeConfig as QuantizeConfig
from sgjnd.calibration.quantize import int8_from_onnx as int8_from_onnx
from sgjnd.calibration.quantize import integer_kernels as integer_kernels
from sgjnd.calibration.quantize import summarize_qdq as summarize_qdq
from sgjnd.calibration.reader import CalibrationSet as CalibrationSet
from sgjnd.calibration.reader import EncoderDataReader as EncoderDataReader
from sgjnd.calibration.reader import HeadDataReader as HeadDataReader
from sgjnd.calibration.reader import ReaderConfig as ReaderConfig
from sgjnd.calibration.reader import TrtCalibrationBatches as TrtCalibrationBatches
from sgjnd.calibration.reader import read_calibration_set as read_calibration_set
from sgjnd.calibration.report import CalibrationReport as CalibrationReport
from sgjnd.calibration.report import accuracy_report as accuracy_report
