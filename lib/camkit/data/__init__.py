"""Data: offline photos with boxes, the localization benchmark, the shapes world and the model zoo.

* :mod:`~camkit.data.images`: real photos from installed packages and Debian packages, with
  hand-drawn boxes; :func:`localization_benchmark` (composites with exact boxes);
* :mod:`~camkit.data.shapes`: the seeded shapes world with exact masks;
  :mod:`~camkit.data.shapes_models`: its GAP + linear CNNs and their training;
* :mod:`~camkit.data.zoo`: pretrained models that take [0, 1] images;
* :mod:`~camkit.data.corpus`: the real-photo corpus (hundreds of independent objects with
  provenance, hand-checked ImageNet classes, cut-outs with exact masks) and
  :func:`cutout_benchmark`; :mod:`~camkit.data.rcc` reads the Qt resource files it comes in;
* :mod:`~camkit.data.paths`: where files are found (``$CAMKIT_DATA_DIR``, the user cache, a checkout).

>>> from camkit.data import photos, localization_benchmark
>>> cat = photos(["chelsea"])[0]; cat.objects[0].imagenet, cat.objects[0].box
('tabby', (0, 0, 410, 300))
"""
from .paths import DataUnavailableError
from .images import (BOXES_FILE, CLASS_GROUPS, DARKNET_PHOTOS, LICENCES, MIN_BACKGROUND_SIDE, MIN_SOURCE_SIDE,
                     PACKAGE_PHOTOS, PHOTO_NAMES, Benchmark, Composite, Photo, PhotoObject, SourceObject,
                     background_windows, darknet_available, darknet_dir, localization_benchmark, photos,
                     source_objects)
from .corpus import (CORPUS_GROUPS, CorpusItem, CutoutBenchmark, CutoutComposite, corpus_photos, corpus_table,
                     cutout_benchmark, cutouts, dhash, hash_distance, predict, sample_units, select_correct)

__all__ = [
    "DataUnavailableError", "BOXES_FILE", "CLASS_GROUPS", "DARKNET_PHOTOS", "LICENCES", "MIN_BACKGROUND_SIDE",
    "MIN_SOURCE_SIDE", "PACKAGE_PHOTOS", "PHOTO_NAMES", "Benchmark", "Composite", "Photo", "PhotoObject",
    "SourceObject", "background_windows", "darknet_available", "darknet_dir", "localization_benchmark", "photos",
    "source_objects",
    "CORPUS_GROUPS", "CorpusItem", "CutoutBenchmark", "CutoutComposite", "corpus_photos", "corpus_table",
    "cutout_benchmark", "cutouts", "dhash", "hash_distance", "predict", "sample_units", "select_correct",
]
