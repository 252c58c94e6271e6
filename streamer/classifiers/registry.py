"""Every gender/age classifier by the name config.yaml gives it (``classifier.name``).

Adding one is a new file in this folder plus one line in ``CLASSIFIERS``: the file holds a class
meeting ``GenderAgeModel`` (``predict(bgr, detections) -> GenderAge``), ``MODEL_ID`` (its entry in
``streamer/data/models.json``) and ``load(config, store)``. Modules are imported only when chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:
    from ..config import Config
    from ..models.store import ModelStore
    from .base import GenderAgeModel

# classifier.name -> its module in this folder.
CLASSIFIERS = Registry(__package__, "gender/age classifier", {
    "cydral": "cydral",
    "levi_hassner": "levi_hassner",
})


def classifier_model_id(name: str) -> str:
    """The model manifest entry the classifier ``name`` loads (``streamer doctor`` checks it)."""
    return str(CLASSIFIERS.module(name).MODEL_ID)


def build_classifier(config: Config, store: ModelStore) -> GenderAgeModel:
    """The configured gender/age model, its files located (or fetched) by ``store``."""
    model: GenderAgeModel = CLASSIFIERS.module(config.classifier.name).load(config, store)
    return model
