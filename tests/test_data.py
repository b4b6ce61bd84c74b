"""camkit.data: offline photos with boxes, and the deterministic localization benchmark."""
from __future__ import annotations

import json
import os

import pytest
import torch

from camkit import data

needs_darknet = pytest.mark.skipif(  # under CI=true missing photos fail instead (make data must fetch them)
    not data.darknet_available() and os.environ.get("CI", "").lower() != "true",
    reason="darknet photos not in a camkit data cache: run `make data` (tools/fetch_data.py)")


def check_boxes_inside(photo: data.Photo) -> None:
    h, w = photo.image.shape[:2]
    for obj in photo.objects:
        x0, y0, x1, y1 = obj.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (photo.name, obj)


def test_box_file_records_who_and_how():
    about = json.loads(data.BOXES_FILE.read_text())["about"]
    assert about["who"] and "grid" in about["how"]


def test_package_photos_have_imagenet_labels_and_boxes_inside():
    photo_list = data.photos(list(data.PACKAGE_PHOTOS))
    assert [p.name for p in photo_list] == list(data.PACKAGE_PHOTOS)
    for photo in photo_list:
        assert photo.image.dtype.name == "uint8" and photo.image.shape[2] == 3
        assert photo.objects and photo.licence
        check_boxes_inside(photo)
    by_name = {p.name: p for p in photo_list}
    assert by_name["coffee"].labels == ["espresso"]
    assert by_name["quokka"].objects[0].box == (148, 50, 550, 642)  # imgaug's own annotation


@needs_darknet
def test_darknet_photos_hold_several_boxed_objects():
    photo_list = data.photos(list(data.DARKNET_PHOTOS))
    for photo in photo_list:
        check_boxes_inside(photo)
    by_name = {p.name: p for p in photo_list}
    assert len(by_name["horses"].objects) >= 4
    assert {"pickup", "mountain bike", "malamute"} <= set(by_name["dog"].labels)


def test_unknown_photo_is_an_error():
    with pytest.raises(ValueError, match="unknown photos"):
        data.photos(["lena"])


def test_accept_groups_expand_to_imagenet_indices():
    cat = data.photos(["chelsea"])[0].objects[0]
    assert cat.index == 281 and set(cat.accept) == set(range(281, 286))


@needs_darknet
def test_benchmark_is_deterministic_with_exact_boxes_inside():
    a = data.localization_benchmark(n=10, seed=3, model=None, size=128)
    b = data.localization_benchmark(n=10, seed=3, model=None, size=128)
    c = data.localization_benchmark(n=10, seed=4, model=None, size=128)
    assert torch.equal(a.images, b.images) and [i.boxes for i in a.items] == [i.boxes for i in b.items]
    assert not torch.equal(a.images, c.images)
    for item in a.items:
        assert (len(item.boxes) == 1) == (item.variant == "single") and len(item.boxes) <= 4
        for k, (x0, y0, x1, y1) in enumerate(item.boxes):
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
            for other in item.boxes[k + 1:]:  # copies never overlap
                assert not data.images._overlaps((x0, y0, x1, y1), other)
        assert item.source.id.startswith(item.source.photo + "/")
        # the background comes from a photo without the pasted class
        background = data.photos([item.background[0]])[0]
        assert not any(o.index in item.source.accept for o in background.objects)
    assert a.masks().shape == (10, 128, 128)


@needs_darknet
def test_benchmark_image_i_does_not_depend_on_n():
    short = data.localization_benchmark(n=4, seed=7, model=None, size=96)
    long = data.localization_benchmark(n=8, seed=7, model=None, size=96)
    assert torch.equal(short.images, long.images[:4])


@needs_darknet
def test_benchmark_keeps_exactly_the_composites_the_model_gets_right():
    from camkit.zoo import load_model

    zm = load_model("efficientnet_lite0")
    everything = data.localization_benchmark(n=8, seed=0, model=zm, keep=False, size=160)
    kept = data.localization_benchmark(n=8, seed=0, model=zm, size=160)
    with torch.no_grad():
        predicted = zm.model(everything.images).argmax(1).tolist()
    flags = [p in item.source.accept for p, item in zip(predicted, everything.items)]
    assert [item.kept for item in everything.items] == flags
    assert kept.n_generated == 8 and kept.n_kept == sum(flags)
    assert all(item.target in item.source.accept for item in kept.items)
    assert len(set(kept.sources)) >= 1


def test_bad_benchmark_arguments_are_rejected():
    with pytest.raises(ValueError, match="n must be"):
        data.localization_benchmark(n=0, model=None)
    with pytest.raises(ValueError, match="multi_fraction"):
        data.localization_benchmark(n=2, model=None, multi_fraction=1.5)
