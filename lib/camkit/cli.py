"""The ``camkit`` command: explain images from the shell.

    camkit explain photo.jpg --model efficientnet_lite0 --method gradcam++ -o photo_cam.png
    camkit explain a.jpg b.jpg --method integrated-gradcam --steps 32 --target "tabby" -o out/
    camkit methods            # every method, with its settings
    camkit models             # every zoo model, and whether its weights are on this machine

``explain`` writes, per image, the overlay (PNG) and the map itself: a grey-scale PNG and a float32
``.npy`` array in [0, 1] at the image's resolution (after the model's resize and crop). It prints
the model's top-5 classes and the class explained.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Optional, Sequence

#: Settings of the methods that the command line passes through (see ``camkit methods``).
PASSED_SETTINGS = ("steps", "samples", "seed", "sigma", "baseline", "variant", "internal_batch_size")


class CommandLineError(Exception):
    """A mistake in the command line: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camkit", description="Class activation maps from the shell.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{explain,methods,models}")
    explain = commands.add_parser("explain", help="explain one or more images with a zoo model",
                                  description="Explain IMAGE(s): writes the overlay PNG and the map (.png, .npy).")
    explain.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files (JPEG, PNG, WebP, ...)")
    explain.add_argument("--model", default="efficientnet_lite0", help="zoo model (see `camkit models`)")
    explain.add_argument("--method", default="gradcam", help="method name (see `camkit methods`)")
    explain.add_argument("--target", default=None,
                         help="class to explain: an index or a class name (default: the top-1 class)")
    explain.add_argument("--layer", default=None, help="target layer (default: the model's own)")
    explain.add_argument("--device", default="auto", help='"auto" (CUDA when present), "cpu", "cuda", "cuda:1"')
    explain.add_argument("-o", "--output", type=Path, default=None,
                         help="OUT.png for one image, or a folder (default: IMAGE_<method>.png beside each image)")
    explain.add_argument("--steps", type=int, help="path points of Integrated Grad-CAM")
    explain.add_argument("--samples", type=int, help="draws of Expected / Smooth Grad-CAM(++)")
    explain.add_argument("--seed", type=int, help="seed of the sampling methods")
    explain.add_argument("--sigma", type=float, help="input noise σ (pixel units) of the sampling methods")
    explain.add_argument("--baseline", help='baseline: "black", "blur" or "mean"')
    explain.add_argument("--variant", help='Integrated Grad-CAM reading: "paper" or "authors-code"')
    explain.add_argument("--internal-batch-size", type=int, dest="internal_batch_size",
                         help="rows per model pass (bounds memory)")
    explain.add_argument("--alpha", type=float, default=0.5, help="opacity of the map in the overlay (0..1)")
    explain.add_argument("--quiet", action="store_true", help="print nothing but errors")
    commands.add_parser("methods", help="list the methods and their settings")
    commands.add_parser("models", help="list the zoo models and whether their weights are here")
    return parser


def _resolve_target(target: Optional[str], classes: Sequence[str]) -> Optional[int]:
    """A class index from ``--target`` (an index or a class name, case-insensitive)."""
    if target is None:
        return None
    if target.lstrip("-").isdigit():
        index = int(target)
        if not 0 <= index < len(classes):
            raise CommandLineError(f"--target {index} is out of range: the model has classes 0..{len(classes) - 1}")
        return index
    lowered = [name.lower() for name in classes]
    if target.lower() in lowered:
        return lowered.index(target.lower())
    close = difflib.get_close_matches(target.lower(), lowered, n=5, cutoff=0.6)
    hint = f"; closest class names: {close}" if close else "; give a class index or an exact class name"
    raise CommandLineError(f"--target {target!r} is not a class of this model{hint}")


def _outputs(image: Path, method: str, output: Optional[Path], many: bool) -> Path:
    """The overlay path of ``image``: ``output`` itself (one image, a .png), or inside the folder ``output``."""
    stem = f"{image.stem}_{method}"
    if output is None:
        return image.with_name(f"{stem}.png")
    if many or output.suffix.lower() != ".png":
        output.mkdir(parents=True, exist_ok=True)
        return output / f"{stem}.png"
    output.parent.mkdir(parents=True, exist_ok=True)
    return output


def _save(overlay_path: Path, image, cam_map, alpha: float) -> tuple[Path, Path, Path]:
    """Write the overlay, the grey-scale map and the .npy map; return the three paths."""
    import numpy as np
    from PIL import Image

    from .report.viz import overlay

    blended = overlay(image, cam_map, alpha=alpha)
    Image.fromarray((np.clip(blended, 0, 1) * 255).round().astype(np.uint8)).save(overlay_path)
    grey = cam_map.detach().float().cpu().clamp(0, 1).numpy()
    map_png = overlay_path.with_name(overlay_path.stem + "_map.png")
    map_npy = overlay_path.with_name(overlay_path.stem + "_map.npy")
    Image.fromarray((grey * 255).round().astype(np.uint8)).save(map_png)
    np.save(map_npy, grey.astype(np.float32))
    return overlay_path, map_png, map_npy


def explain(args: argparse.Namespace) -> int:
    """``camkit explain``: load the model once, explain every image, write the files."""
    import torch
    from PIL import Image, UnidentifiedImageError

    from .methods import METHODS, create_method
    from .report import default_device
    from .data.zoo import list_models, load_model

    if args.method not in METHODS:
        close = difflib.get_close_matches(args.method, list(METHODS), n=3)
        raise CommandLineError(f"unknown --method {args.method!r}; methods: {', '.join(METHODS)}"
                               + (f" (did you mean {close[0]!r}?)" if close else ""))
    if args.model not in list_models():
        raise CommandLineError(f"unknown --model {args.model!r}; models: {', '.join(list_models())}")
    if args.method in ("guided-backprop",):
        raise CommandLineError("guided-backprop gives an input-space gradient, not a map; use guided-gradcam "
                               "from Python (camkit.GuidedBackprop) or another method here")
    if not 0 <= args.alpha <= 1:
        raise CommandLineError(f"--alpha must lie in [0, 1], got {args.alpha}")
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise CommandLineError(f"no such image file(s): {', '.join(missing)}")
    try:
        device = default_device(args.device)
    except (ValueError, RuntimeError) as error:
        raise CommandLineError(f"--device: {error}") from None
    zoo_model = load_model(args.model, device)
    target = _resolve_target(args.target, zoo_model.classes)
    settings = {k: getattr(args, k) for k in PASSED_SETTINGS if getattr(args, k) is not None}
    cam = create_method(args.method, zoo_model.model, args.layer or zoo_model.target_layer, **settings)
    images = args.images
    if len(images) > 1 and not args.quiet:
        from tqdm.auto import tqdm

        images = tqdm(images, desc=f"{args.method} on {args.model}", unit="image")
    for path in images:
        try:
            with Image.open(path) as handle:
                x = zoo_model.prepare([handle.convert("RGB")])
        except UnidentifiedImageError:
            raise CommandLineError(f"{path} is not an image file Pillow can read") from None
        with torch.no_grad():
            probabilities = zoo_model.model(x).softmax(1)[0]
        explained = int(probabilities.argmax()) if target is None else target
        cam_map = cam(x, explained)[0]
        written = _save(_outputs(path, args.method, args.output, len(args.images) > 1), x[0], cam_map, args.alpha)
        if not args.quiet:
            top = probabilities.topk(5)
            ranked = ", ".join(f"{zoo_model.classes[i]} {p:.2f}" for p, i in zip(top.values.tolist(), top.indices.tolist()))
            print(f"{path}: top-5 {ranked}")
            print(f"  explained class {explained} ({zoo_model.classes[explained]}, p = {probabilities[explained]:.3f}) "
                  f"with {cam!r}\n  wrote {', '.join(str(p) for p in written)}")
    return 0


def list_methods() -> int:
    """``camkit methods``: each method's name, label and settings."""
    from .methods import METHODS, method_settings

    for name, cls in METHODS.items():
        settings = ", ".join(sorted(method_settings(name) - {"reshape", "relu", "generator"}))
        print(f"{name:<20s} {cls.label:<22s} {settings}")
    return 0


def list_zoo() -> int:
    """``camkit models``: each zoo model and whether its pretrained weights are on this machine."""
    from .data import zoo

    for name in zoo.list_models():
        try:
            where = zoo.weights_location(name)
            state = f"weights: {where}"
        except zoo.WeightsUnavailableError as error:
            state = f"weights missing ({str(error).split(';')[0]})"
        print(f"{name:<20s} {state}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``camkit`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "explain":
            return explain(args)
        if args.command == "methods":
            return list_methods()
        return list_zoo()
    except CommandLineError as error:
        print(f"camkit: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a library error (bad layer, missing weights): one readable line, no traceback
        from .data.paths import DataUnavailableError
        from .data.zoo import WeightsUnavailableError

        if isinstance(error, (ValueError, TypeError, WeightsUnavailableError, DataUnavailableError)):
            print(f"camkit: error: {error}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
