"""Contact sheets of the corpus for checking the class mapping by eye (an authoring tool).

Each thumbnail is labelled with its index, name, the source's own label (blue) and the accepted
ImageNet classes; with ``--model`` also the model's top-1 (red when it is not accepted). Cut-outs
are shown on a light blue background so that their alpha is visible. Sheets go to ``--out``
(default ``/tmp/camkit-sheets``) as ``<kind>_<first index>.png``, ``--per-sheet`` items each.

    .venv/bin/python tools/corpus_sheets.py photos
    .venv/bin/python tools/corpus_sheets.py cutouts --model efficientnet_lite0 --package tuxpaint-stamps-default
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from camkit.data import corpus
from camkit.data.zoo import imagenet_classes


def render(items: list, out: Path, top1: list[int] | None, cols: int = 6, cell: int = 240) -> None:
    """One sheet: thumbnails in a grid with four lines of text under each."""
    classes = imagenet_classes()
    text_h = 4 * 12 + 4
    sheet = Image.new("RGB", (cols * cell, math.ceil(len(items) / cols) * (cell + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, item in enumerate(items):
        if item.kind == "cutout":
            rgba = np.dstack([item.image, item.alpha]).astype(np.float32) / 255
            pixels = (rgba[..., :3] * rgba[..., 3:] + np.array([0.8, 0.8, 1.0]) * (1 - rgba[..., 3:])) * 255
            image = Image.fromarray(pixels.astype(np.uint8))
        else:
            image = Image.fromarray(np.ascontiguousarray(item.image))
        image.thumbnail((cell - 4, cell - 4))
        x, y = (k % cols) * cell, (k // cols) * (cell + text_h)
        sheet.paste(image, (x + 2, y + 2))
        accepted = ";".join(item.classes) or "(no class)"
        lines = [(f"{k}: {item.name.split('/', 1)[1]}", "black"), (item.label, "blue"), (accepted, "black")]
        if top1 is not None:
            lines.append((f"top-1: {classes[top1[k]]}", "black" if top1[k] in item.accept else "red"))
        for j, (line, colour) in enumerate(lines):
            draw.text((x + 2, y + cell + j * 12), line[:40], fill=colour)
    sheet.save(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("photos", "cutouts"))
    parser.add_argument("--package", help="only items of this package")
    parser.add_argument("--model", help="also show this zoo model's top-1")
    parser.add_argument("--per-sheet", type=int, default=48)
    parser.add_argument("--out", type=Path, default=Path("/tmp/camkit-sheets"))
    args = parser.parse_args(argv)
    items = corpus.corpus_photos(boxed=False) if args.kind == "photos" else corpus.cutouts()
    if args.package:
        items = [i for i in items if i.package == args.package]
    top1 = None
    if args.model:
        top1 = corpus.predict(items, args.model, k=1)[1][:, 0].tolist()
    args.out.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(items), args.per_sheet):
        chunk = slice(start, start + args.per_sheet)
        path = args.out / f"{args.kind}_{start:04d}.png"
        render(items[chunk], path, top1[chunk] if top1 is not None else None)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
