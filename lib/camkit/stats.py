"""Old location of :mod:`camkit.report.stats` (``camkit.stats`` stays importable)."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("camkit.report.stats")
