"""``camkit.shapes``: the shapes world (:mod:`camkit.data.shapes`) and its CNNs (:mod:`camkit.data.shapes_models`)
under one name, as the notebooks use them."""
from .data.shapes import *  # noqa: F401,F403
from .data.shapes import CLASSES, IMAGE_SIZE, MEAN, STD, TEST_SEED, TEST_SIZE, TEST_VARIANT, VARIANTS  # noqa: F401
from .data.shapes_models import *  # noqa: F401,F403
from .data.shapes_models import ARCHITECTURES, WeightsUnavailableError  # noqa: F401
