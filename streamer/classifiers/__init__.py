"""Gender and age: the networks (one file each, listed in ``registry.py``), the face chips they
read (``align.py``) and the calibration of their outputs (``calibration.py``)."""

from .base import GenderAgeModel
from .registry import CLASSIFIERS, build_classifier, classifier_model_id

__all__ = ["CLASSIFIERS", "GenderAgeModel", "build_classifier", "classifier_model_id"]
