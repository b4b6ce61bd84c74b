"""Old location of :mod:`camkit.report.viz` (``camkit.viz`` stays importable)."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("camkit.report.viz")
