"""Reliability on real architectures: every method on the torchvision families, transformers through
``reshape=``, and the ways people hold their models (in-place ReLU, training mode, channels_last,
views, half precision, torch.compile, DataParallel).

Random weights and small inputs (64 px; Inception v3 needs at least 75 px and gets 107 so that its
last block is 2 × 2); widths are reduced where the torchvision builder allows it. Score-CAM runs with
``max_channels=16`` and the path methods with 2 steps / samples, so the grid stays fast on a CPU.
"""
import copy
import functools
import importlib
import shutil
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
import torch
from torch import nn
from torchvision.models import densenet, inception_v3, mobilenet_v2, mobilenet_v3_small, resnet, vgg
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.efficientnet import EfficientNet, MBConvConfig
from torchvision.models.regnet import BlockParams, RegNet
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

import camkit
from camkit.methods import channels_last_to_first, tokens_to_grid
from nets import FAST, hook_count

try:  # registers the multi-pass methods in camkit.METHODS (a no-op once camkit imports it)
    importlib.import_module("camkit.methods.sampled")
except ModuleNotFoundError:
    pass

#: Settings that keep the multi-pass methods fast; methods not listed run with their defaults.
METHOD_NAMES = sorted(camkit.METHODS)
GUIDED = (nn.ReLU, nn.ReLU6)


@pytest.fixture(scope="module", autouse=True)
def _single_thread(one_thread):
    """Tiny models gain nothing from intra-op threads (fixture in conftest.py)."""


def small_vgg() -> nn.Module:
    """torchvision's VGG class with narrow features and a narrow classifier (the class hard-codes
    4096-wide hidden layers, ~120 M parameters, so the shell is built on the meta device)."""
    cfg = [16, "M", 32, "M", 64, 64, "M"]
    with torch.device("meta"):
        model = vgg.VGG(vgg.make_layers(cfg), num_classes=10, init_weights=False)
    model.features = vgg.make_layers(cfg)
    model.classifier = nn.Sequential(nn.Linear(64 * 7 * 7, 32), nn.ReLU(True), nn.Dropout(),
                                     nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10))
    assert not any(p.is_meta for p in model.parameters())
    return model


def small_vit() -> nn.Module:
    model = VisionTransformer(image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                              num_classes=10)
    nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the head: no gradients at all
    return model


@dataclass(frozen=True)
class Family:
    build: Callable[[], nn.Module]
    size: int
    layer: str
    gap_linear: bool  # CAM applies at ``layer`` (GAP + linear head)
    reshape: Optional[Callable] = None
    batch: int = 2


FAMILIES = {
    "resnet": Family(lambda: resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], num_classes=10), 64, "layer4", True),
    "vgg": Family(small_vgg, 32, "features", False),
    "densenet": Family(lambda: densenet.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16,
                                                 bn_size=2, num_classes=10), 64, "features", False),
    "mobilenet_v2": Family(lambda: mobilenet_v2(width_mult=0.25, num_classes=10), 64, "features", True),
    "mobilenet_v3": Family(lambda: mobilenet_v3_small(width_mult=0.25, num_classes=10), 64, "features", False),
    "efficientnet": Family(lambda: EfficientNet([MBConvConfig(1, 3, 1, 16, 8, 1), MBConvConfig(4, 3, 2, 8, 16, 1),
                                                 MBConvConfig(4, 5, 2, 16, 24, 1), MBConvConfig(4, 3, 2, 24, 32, 1),
                                                 MBConvConfig(4, 3, 2, 32, 40, 1)], dropout=0.2, num_classes=10),
                           64, "features", True),
    "convnext": Family(lambda: ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 1), CNBlockConfig(64, 128, 1),
                                         CNBlockConfig(128, None, 1)], num_classes=10), 64, "features", False),
    "regnet": Family(lambda: RegNet(BlockParams.from_init_params(depth=4, w_0=8, w_a=8.0, w_m=2.0, group_width=8,
                                                                 se_ratio=0.25), stem_width=8, num_classes=10),
                     64, "trunk_output", True),
    "inception_v3": Family(lambda: inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=10),
                           107, "Mixed_7c", True, batch=1),  # the heaviest: one image
    # ViT: the input of the last block's attention (the last block's output reaches the class token
    # only through its own row, so its patch tokens get no gradient).
    "vit": Family(small_vit, 64, "encoder.layers.encoder_layer_1.ln_1", False, tokens_to_grid),
    # Swin: the final LayerNorm (N, h, w, C) is followed by GAP + linear, so CAM applies there.
    "swin": Family(lambda: SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                                           window_size=[2, 2], num_classes=10),
                   64, "norm", True, channels_last_to_first),
}
CNNS = [name for name, family in FAMILIES.items() if family.reshape is None]


@functools.lru_cache(maxsize=None)
def built(name: str) -> nn.Module:
    """The family's model in eval mode, its batch-norm statistics set from a few random images so
    activations have a realistic scale (fresh statistics shrink them to ~1e-6 in MobileNetV2,
    below float16's resolution)."""
    torch.manual_seed(0)
    model = FAMILIES[name].build()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average
    with torch.no_grad():
        model.train()(images(4, FAMILIES[name].size, seed=99))
    return model.eval()


def images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def make(method: str, model: nn.Module, layer, reshape=None, **extra):
    cls = camkit.METHODS[method]
    kwargs = {**FAST.get(method, {}), **extra}
    if reshape is not None and "reshape" in camkit.methods.method_settings(method):
        kwargs["reshape"] = reshape
    return cls(model, layer, **kwargs)


def expected_error(method: str, family: Family, model: nn.Module) -> Optional[str]:
    """The ValueError a method must raise on this model, or None where it applies."""
    if method == "cam" and not family.gap_linear:
        return r"CAM needs a GAP \+ linear head"
    if method.startswith("guided") and not any(isinstance(m, GUIDED) for m in model.modules()):
        return "needs nn.ReLU modules"
    return None


def check_maps(maps: torch.Tensor, x: torch.Tensor, method: str) -> None:
    input_space = method.startswith("guided")
    assert maps.shape == ((x.shape[0], 3, *x.shape[-2:]) if input_space else (x.shape[0], *x.shape[-2:]))
    assert maps.dtype == torch.float32 and maps.device == x.device
    assert torch.isfinite(maps).all()
    assert maps.min() >= (-1 if input_space else 0) and maps.max() <= 1
    assert not maps.requires_grad and maps.grad_fn is None


def hand_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, reshape=None) -> torch.Tensor:
    """Raw signed Grad-CAM Σ_k mean(g^k) A^k computed independently of camkit: the layer output
    is made a leaf, the gradient taken with respect to it, and ``reshape`` applied to both."""
    store = {}

    def hook(module, inputs, output):
        store["a"] = output.detach().requires_grad_(True)
        return store["a"] * 1

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    (g,) = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), store["a"])
    a = store["a"].detach()
    if reshape is not None:
        a, g = reshape(a), reshape(g)
    return (g.mean(dim=(2, 3), keepdim=True) * a).sum(1)


# --------------------------------------------------------------------------- the grid

@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_method_on_every_family(name, method):
    family, model = FAMILIES[name], built(name)
    x = images(family.batch, family.size)
    cam = make(method, model, family.layer, family.reshape)
    error = expected_error(method, family, model)
    if error:
        with pytest.raises(ValueError, match=error):
            cam(x)
    else:
        check_maps(cam(x), x, method)
    assert hook_count(model) == 0 and torch.is_grad_enabled()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_gradcam_equals_an_independent_hand_computation(name):
    family, model = FAMILIES[name], built(name)
    x = images(family.batch, family.size)
    cam = camkit.GradCAM(model, family.layer, relu=False, reshape=family.reshape)
    raw = cam(x, normalize=False, upsample=False)
    expected = hand_gradcam(model, cam.target_layer(x), x, family.reshape)
    assert raw.abs().amax() > 0, "gradients did not reach the layer"
    torch.testing.assert_close(raw, expected, rtol=1e-4, atol=1e-6 * expected.abs().max().item())


@pytest.mark.parametrize("name", [n for n, f in FAMILIES.items() if f.gap_linear])
def test_cam_is_gradcam_times_z_on_gap_linear_heads(name):
    """For y = W·GAP(A) + b, Grad-CAM's α_k = w^c_k / Z, so the raw signed maps satisfy CAM = Z · Grad-CAM."""
    family, model = FAMILIES[name], built(name)
    x = images(family.batch, family.size)
    options = dict(normalize=False, upsample=False)
    cam = camkit.CAM(model, family.layer, reshape=family.reshape)(x, **options)
    grad = camkit.GradCAM(model, family.layer, relu=False, reshape=family.reshape)(x, **options)
    z = cam.shape[-1] * cam.shape[-2]
    torch.testing.assert_close(cam, z * grad, rtol=1e-3, atol=1e-5 * cam.abs().max().item())


# --------------------------------------------------------------------------- layers

@pytest.mark.parametrize("name", CNNS)
def test_suggest_layer_announces_the_last_feature_layer_and_matches_the_named_layer(name):
    family, model = FAMILIES[name], built(name)
    x = images(family.batch, family.size)
    cam = camkit.GradCAM(model)  # layer=None: suggested on the first call
    with pytest.warns(camkit.LayerChoice, match=repr(family.layer)):
        suggested = cam(x)
    assert cam.layer_name == family.layer
    torch.testing.assert_close(suggested, camkit.GradCAM(model, family.layer)(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error", camkit.LayerChoice)
        cam(x)  # announced once, on the call that picked it


def test_layer_given_as_a_module_equals_the_name():
    model = built("resnet")
    x = images(2, 64)
    torch.testing.assert_close(camkit.GradCAM(model, model.layer4)(x), camkit.GradCAM(model, "layer4")(x))


def test_transformer_token_layer_without_reshape_says_how_to_fix_it():
    model = built("vit")
    with pytest.raises(ValueError, match=r"not a spatial .*reshape="):
        camkit.GradCAM(model, FAMILIES["vit"].layer)(images(1, 64))
    assert hook_count(model) == 0


def test_reshape_helpers_reject_layouts_they_cannot_handle():
    with pytest.raises(ValueError, match="square grid"):
        tokens_to_grid(torch.zeros(1, 1 + 15, 8))
    with pytest.raises(ValueError, match=r"\(N, tokens, C\)"):
        tokens_to_grid(torch.zeros(1, 8, 4, 4))
    with pytest.raises(TypeError, match="reshape must be a callable"):
        camkit.GradCAM(built("vit"), "encoder", reshape="tokens")
    grid = tokens_to_grid(torch.arange(2 * 5 * 3.0).reshape(2, 5, 3))  # class token + 2 × 2 patches
    assert grid.shape == (2, 3, 2, 2) and grid[0, :, 0, 0].tolist() == [3.0, 4.0, 5.0]


# --------------------------------------------------------------------------- how models are held

def inplace_off(model: nn.Module) -> nn.Module:
    other = copy.deepcopy(model)
    for module in other.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    return other


@pytest.mark.parametrize("layer", ["features", "features.8", "features.9"])  # before and at an in-place ReLU
@pytest.mark.parametrize("method", ["gradcam", "layercam", "guided-backprop", "scorecam"])
def test_in_place_relu_gives_the_same_maps_as_out_of_place(method, layer):
    model = built("vgg")
    assert isinstance(model.features[9], nn.ReLU) and model.features[9].inplace
    x = images(2, 32)
    torch.testing.assert_close(make(method, model, layer)(x), make(method, inplace_off(model), layer)(x))
    assert hook_count(model) == 0


def test_a_module_called_twice_is_refused_clearly():
    """torchvision's BasicBlock calls its one ReLU module twice."""
    model = built("resnet")
    with pytest.raises(ValueError, match="runs more than once"):
        camkit.GradCAM(model, "layer4.0.relu")(images(1, 64))
    assert hook_count(model) == 0


def test_training_mode_warns_and_keeps_the_mode():
    torch.manual_seed(0)
    model = FAMILIES["resnet"].build().train()
    with pytest.warns(UserWarning, match="training mode"):
        maps = camkit.GradCAM(model, "layer4")(images(2, 64))
    assert model.training and all(m.training for m in model.modules())
    assert torch.isfinite(maps).all() and hook_count(model) == 0


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "integrated-gradcam", "scorecam"])
def test_channels_last_model_and_input_give_the_same_maps(method):
    if method not in camkit.METHODS:
        pytest.skip(f"{method} is not available")
    model = built("resnet")
    x = images(2, 64)
    expected = make(method, model, "layer4")(x)
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    got = make(method, fast, "layer4")(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("view", ["strided", "transposed", "expanded"])
def test_non_contiguous_inputs_give_the_same_maps(view):
    model = built("resnet")
    base = images(2, 128)
    x = {"strided": base[:, :, ::2, ::2], "transposed": base[:, :, :64, :64].transpose(2, 3),
         "expanded": base[:1, :, :64, :64].expand(2, -1, -1, -1)}[view]
    assert not x.is_contiguous()
    cam = camkit.GradCAM(model, "layer4")
    torch.testing.assert_close(cam(x), cam(x.contiguous()))


def dtype_supported(dtype: torch.dtype) -> bool:
    try:
        conv = nn.Conv2d(3, 2, 3).to(dtype)
        conv(torch.zeros(1, 3, 4, 4, dtype=dtype, requires_grad=True)).sum().backward()
        return True
    except RuntimeError:
        return False


@pytest.mark.parametrize("method, dtype", [(m, torch.bfloat16) for m in METHOD_NAMES]
                         + [(m, torch.float16) for m in ("cam", "gradcam", "gradcam++")])
def test_half_precision_models_give_float32_maps(method, dtype):
    if not dtype_supported(dtype):
        pytest.skip(f"{dtype} convolutions are not supported on this CPU build")
    model = copy.deepcopy(built("mobilenet_v2")).to(dtype)
    x = images(2, 64).to(dtype)
    check_maps(make(method, model, "features")(x), x, method)
    assert hook_count(model) == 0


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "integrated-gradcam", "scorecam"])
def test_autocast_bfloat16_gives_float32_maps_close_to_float32(method):
    model, x = built("resnet"), images(2, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        check_maps(make(method, model, "layer4")(x), x, method)
        got = make(method, model, "layer4")(x, normalize=False, upsample=False)
    if method != "scorecam":  # softmax gains of a random model are ~1e-4, below bfloat16's resolution
        expected = make(method, model, "layer4")(x, normalize=False, upsample=False)
        assert got.dtype == torch.float32
        assert (got - expected).norm() <= 0.1 * expected.norm()  # measured: 0.5-3 % on this model


def compiled_maps(backend: str):
    model, x = built("resnet"), images(2, 64)
    compiled = torch.compile(model, backend=backend)
    expected = camkit.GradCAM(model, "layer4")(x)
    for name in ("layer4", "_orig_mod.layer4"):
        cam = camkit.GradCAM(compiled, name)
        assert cam.layer_name == "_orig_mod.layer4"
        torch.testing.assert_close(cam(x), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(cam(x, 3), camkit.GradCAM(model, "layer4")(x, 3), rtol=1e-4, atol=1e-5)
    assert hook_count(model) == 0


def test_torch_compile_aot_eager():
    compiled_maps("aot_eager")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor needs a C compiler")
def test_torch_compile_default_backend():
    compiled_maps("inductor")


def test_data_parallel_is_unwrapped_and_both_layer_names_work():
    """On a CPU DataParallel only wraps; camkit computes on the wrapped module (one replica, its device),
    which also avoids hooks firing in several replica threads on a multi-GPU machine."""
    model, x = built("resnet"), images(2, 64)
    wrapped = nn.DataParallel(model)
    assert wrapped.training and not model.training  # the wrapper has its own (unused) flag
    expected = camkit.GradCAM(model, "layer4")(x)
    for name in ("module.layer4", "layer4"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no training-mode warning for an eval model in a train-mode wrapper
            cam = camkit.GradCAM(wrapped, name)
            torch.testing.assert_close(cam(x), expected)
        assert cam.model is model and cam.layer_name == "layer4"
    assert hook_count(wrapped) == 0
    with pytest.raises(ValueError, match=r"closest names: \['layer4'"):
        camkit.GradCAM(wrapped, "module.layer44")
