"""Autoencoder models: one registry of kinds (registry.py), one base class (base.py).

Importing this package registers every built-in kind.
"""

from aetk.models.base import Autoencoder
from aetk.models.registry import MODELS, create_model, model_names, register_model

__all__ = ["MODELS", "Autoencoder", "create_model", "model_names", "register_model"]
