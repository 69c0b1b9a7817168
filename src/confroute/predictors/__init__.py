"""Predictors: the models confroute routes between.

Heavy backends (Hugging Face, DeepSparse, ONNX Runtime) are imported lazily so that the core
stays numpy/scipy/scikit-learn only.
"""

from .base import Predictor
from .callable import CallablePredictor
from .sklearn import SklearnPredictor

__all__ = ["Predictor", "CallablePredictor", "SklearnPredictor"]
