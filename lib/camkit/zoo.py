"""Old location of :mod:`camkit.data.zoo` (``camkit.zoo`` stays importable)."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("camkit.data.zoo")
