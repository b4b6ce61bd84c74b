"""The bad-input battery: each mistake gives a clear exception that names the problem and what is
allowed, and leaves no hook on the model, no changed grad mode and no NaN map behind."""
import pytest
import torch
from torch import nn

import camkit
from camkit import metrics, report
from camkit.methods import normalize_maps
from nets import FAST, GapLinearNet, ReluHeadNet, hook_count, images

pytestmark = pytest.mark.timeout(120)  # "no hang": pytest-timeout fails a case that blocks


@pytest.fixture(scope="module", autouse=True)
def _single_thread(one_thread):
    """Tiny models: intra-op threads only add spinning on a shared CPU (fixture in conftest.py)."""


# --------------------------------------------------------------------------- models that go wrong

class DeadBranchNet(GapLinearNet):
    """``aux`` runs on every forward but the output does not use it."""

    def __init__(self):
        super().__init__()
        self.aux = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        self.aux(x)
        return super().forward(x)


class UnusedLayerNet(GapLinearNet):
    """``spare`` is a submodule that forward never calls."""

    def __init__(self):
        super().__init__()
        self.spare = nn.Conv2d(6, 6, 1)


class TupleLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, y.mean()


class TupleLayerNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.block = TupleLayer()
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        y, _ = self.block(x)
        return self.fc(y.mean(dim=(2, 3)))


class SharedConvNet(nn.Module):
    """One conv module applied twice."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3, 5)

    def forward(self, x):
        return self.fc(self.conv(self.conv(x).relu()).mean(dim=(2, 3)))


class MapOutputNet(GapLinearNet):
    """Returns a segmentation-like (N, classes, h, w) output instead of logits."""

    def forward(self, x):
        return self.features(x)


def dead_features_net() -> GapLinearNet:
    """GapLinearNet whose target layer outputs exactly zero (ReLU of a negative constant)."""
    model = GapLinearNet().eval()
    with torch.no_grad():
        model.features[2].weight.zero_()
        model.features[2].bias.fill_(-1.0)
    return model


# --------------------------------------------------------------------------- the battery

X = images(2, 16)


def one_pixel(value: float) -> torch.Tensor:
    x = X.clone()
    x[1, 2, 3, 4] = value
    return x


def method(name, model, layer="features", **kwargs):
    return camkit.METHODS[name](model, layer, **{**FAST.get(name, {}), **kwargs})


def gradcam(model, layer="features", **kwargs):
    return camkit.GradCAM(model, layer, **kwargs)


#: (id, model factory, call(model), exception type, regex the message must match)
CASES = [
    # images
    ("rank 3 image", GapLinearNet, lambda m: gradcam(m)(X[0]), ValueError, r"\(N, C, H, W\).*unsqueeze\(0\)"),
    ("rank 5 batch", GapLinearNet, lambda m: gradcam(m)(X[None]), ValueError, r"5-D shape .* 3-D layers .* has none"),
    ("rank 6 batch", GapLinearNet, lambda m: gradcam(m)(X[None, None]), ValueError, r"\(N, C, H, W\).*got 6-D"),
    ("numpy array", GapLinearNet, lambda m: gradcam(m)(X.numpy()), TypeError, r"torch.Tensor.*got ndarray"),
    ("one channel for an RGB model", GapLinearNet, lambda m: gradcam(m)(X[:, :1]), RuntimeError,
     r"to have 3 channels, but got 1"),
    ("empty batch", GapLinearNet, lambda m: gradcam(m)(X[:0]), ValueError, r"empty batch \(N = 0\)"),
    ("uint8 pixels", GapLinearNet, lambda m: gradcam(m)((X * 255).to(torch.uint8)), TypeError,
     r"floating-point.*\[0, 1\].*torch.uint8.*x.float\(\) / 255"),
    ("int64 pixels", GapLinearNet, lambda m: gradcam(m)(X.long()), TypeError, r"floating-point.*torch.int64"),
    ("bool pixels", GapLinearNet, lambda m: gradcam(m)(X > 0.5), TypeError, r"floating-point.*torch.bool"),
    ("NaN pixel", GapLinearNet, lambda m: gradcam(m)(one_pixel(float("nan"))), ValueError, r"x contains 1 NaN or Inf values"),
    ("Inf pixel", GapLinearNet, lambda m: gradcam(m)(one_pixel(-float("inf"))), ValueError, r"x contains 1 NaN or Inf values"),
    # targets
    ("class index out of range", GapLinearNet, lambda m: gradcam(m)(X, 5), ValueError,
     r"class index 5 is out of range .* 5 outputs \(allowed 0..4\)"),
    ("negative class index", GapLinearNet, lambda m: gradcam(m)(X, -1), ValueError, r"must be >= 0, got -1"),
    ("out of range in an (N, K) target", GapLinearNet, lambda m: gradcam(m)(X, torch.tensor([[0, 1], [2, 9]])),
     ValueError, r"class index 9 .*allowed 0..4"),
    ("float class index", GapLinearNet, lambda m: gradcam(m)(X, torch.tensor([1.0, 2.0])), TypeError,
     r"integer class indices, got dtype torch.float32"),
    ("boolean target", GapLinearNet, lambda m: gradcam(m)(X, True), TypeError, r"class indices \(int\), not booleans"),
    ("target batch size mismatch", GapLinearNet, lambda m: gradcam(m)(X, [0, 1, 2]), ValueError,
     r"an int, N = 2 ints, or an \(N, K\) tensor with N = 2; got shape \(3,\)"),
    ("3-D target", GapLinearNet, lambda m: gradcam(m)(X, torch.zeros(2, 1, 1, dtype=torch.long)), ValueError,
     r"\(N, K\) tensor with N = 2; got shape \(2, 1, 1\)"),
    ("no class per image", GapLinearNet, lambda m: gradcam(m)(X, torch.zeros(2, 0, dtype=torch.long)), ValueError,
     r"K = 0 classes"),
    ("callable target of wrong shape", GapLinearNet, lambda m: gradcam(m)(X, lambda logits: logits.sum()), ValueError,
     r"callable target must return a \(B,\) or \(B, K\) tensor .*B = 2.*got \(\)"),
    ("class index on a non-logit output", MapOutputNet, lambda m: gradcam(m, "features.0")(X, 1), ValueError,
     r"not \(N, classes\) logits; pass target= a callable"),
    # layers
    ("misspelt layer", GapLinearNet, lambda m: gradcam(m, "featurs"), ValueError,
     r"no layer named 'featurs'; closest names: \['features'"),
    ("unknown layer, nothing close", GapLinearNet, lambda m: gradcam(m, "backbone.stage9"), ValueError,
     r"no layer named 'backbone.stage9'; top-level modules: \['features', 'pool', 'fc'\]"),
    ("module of another model", GapLinearNet, lambda m: gradcam(m, nn.Conv2d(3, 3, 1)), ValueError,
     r"not a submodule of the model"),
    ("layer of wrong type", GapLinearNet, lambda m: gradcam(m, 3), TypeError, r"dotted module name \(str\), an nn.Module or None"),
    ("non-spatial layer", GapLinearNet, lambda m: gradcam(m, "fc")(X), ValueError,
     r"layer 'fc''s output has shape \(2, 5\), not a spatial \(N, C, h, w\) map"),
    ("layer the output does not depend on", DeadBranchNet, lambda m: gradcam(m, "aux")(X), ValueError,
     r"output does not depend on layer 'aux'; pick a layer on the path"),
    ("layer never called", UnusedLayerNet, lambda m: gradcam(m, "spare")(X), ValueError,
     r"layer 'spare' was not called during the forward pass"),
    ("layer returning a tuple", TupleLayerNet, lambda m: gradcam(m, "block")(X), ValueError,
     r"layer 'block''s output is a tuple, not a tensor"),
    ("module called twice", SharedConvNet, lambda m: gradcam(m, "conv")(X), ValueError, r"runs more than once"),
    ("CAM on a head that is not GAP + linear", ReluHeadNet, lambda m: camkit.CAM(m, "features")(X), ValueError,
     r"CAM needs a GAP \+ linear head.*use Grad-CAM"),
    # settings
    ("model that is not a module", GapLinearNet, lambda m: gradcam(lambda x: x), TypeError,
     r"model must be a torch.nn.Module, got function"),
    ("internal_batch_size = 0", GapLinearNet, lambda m: gradcam(m, internal_batch_size=0), ValueError,
     r"internal_batch_size must be a positive integer or None, got 0"),
    ("steps = 0", GapLinearNet, lambda m: method("integrated-gradcam", m, steps=0), ValueError,
     r"steps must be a positive integer, got 0"),
    ("steps = 2.5", GapLinearNet, lambda m: method("integrated-gradcam", m, steps=2.5), ValueError,
     r"steps must be a positive integer, got 2.5"),
    ("steps = True", GapLinearNet, lambda m: method("integrated-gradcam", m, steps=True), ValueError,
     r"steps must be a positive integer, got True"),
    ("samples = 0", GapLinearNet, lambda m: method("expected-gradcam", m, samples=0), ValueError,
     r"samples must be a positive integer, got 0"),
    ("negative sigma (Smooth Grad-CAM++)", GapLinearNet, lambda m: method("smooth-gradcam++", m, sigma=-0.1), ValueError,
     r"sigma must be a finite number >= 0, got -0.1"),
    ("negative sigma (Expected Grad-CAM)", GapLinearNet, lambda m: method("expected-gradcam", m, sigma=-1), ValueError,
     r"sigma must be a finite number >= 0, got -1"),
    ("NaN sigma", GapLinearNet, lambda m: method("smooth-gradcam++", m, sigma=float("nan")), ValueError,
     r"sigma must be a finite number >= 0, got nan"),
    ("unknown baseline", GapLinearNet, lambda m: method("integrated-gradcam", m, baseline="white"), ValueError,
     r"unknown baseline 'white'; allowed: .*'black', 'blur', 'mean',? or a tensor of images"),
    ("unknown variant", GapLinearNet, lambda m: method("integrated-gradcam", m, variant="author"), ValueError,
     r"unknown variant 'author'; allowed: .*'paper', 'authors-code'"),
    ("baseline of the wrong size", GapLinearNet,
     lambda m: method("integrated-gradcam", m, baseline=torch.zeros(3, 8, 8))(X), ValueError,
     r"baseline has images of shape \(3, 8, 8\), the inputs \(3, 16, 16\); they must match"),
    ("baseline count neither 1 nor N", GapLinearNet,
     lambda m: method("integrated-gradcam", m, baseline=torch.zeros(3, 3, 16, 16))(X), ValueError,
     r"baseline must hold 1 or N = 2 images, got 3"),
    ("references of the wrong shape", GapLinearNet,
     lambda m: method("expected-gradcam", m, references=torch.rand(4, 1, 16, 16))(X), ValueError,
     r"references has images of shape \(1, 16, 16\), the inputs \(3, 16, 16\); they must match"),
    ("integer references", GapLinearNet,
     lambda m: method("expected-gradcam", m, references=torch.zeros(4, 3, 16, 16, dtype=torch.uint8)), ValueError,
     r"references must be a float tensor"),
    ("references with NaN", GapLinearNet,
     lambda m: method("expected-gradcam", m, references=torch.full((4, 3, 16, 16), float("nan"))), ValueError,
     r"references contains NaN or Inf"),
    ("seed and generator together", GapLinearNet,
     lambda m: method("expected-gradcam", m, seed=1, generator=torch.Generator()), ValueError, r"seed= or generator=, not both"),
    ("max_channels = 0", GapLinearNet, lambda m: method("scorecam", m, max_channels=0), ValueError,
     r"max_channels must be a positive integer or None, got 0"),
    # metrics: boxes
    ("box outside the image", GapLinearNet,
     lambda m: metrics.pointing_game(torch.rand(2, 16, 16), [[0, 0, 8, 8], [4, 4, 20, 12]]), ValueError,
     r"regions\[1\]: box .* outside the 16 × 16 image; .*0 <= x0 < x1 <= W, 0 <= y0 < y1 <= H"),
    ("negative box corner", GapLinearNet,
     lambda m: metrics.energy_pointing_game(torch.rand(1, 16, 16), [[-2, 0, 8, 8]]), ValueError, r"outside the 16 × 16 image"),
    ("empty box", GapLinearNet, lambda m: metrics.bbox_score(torch.rand(1, 16, 16), [[5, 5, 5, 9]]), ValueError,
     r"is empty \(needs x0 < x1 and y0 < y1\)"),
    ("box count mismatch", GapLinearNet, lambda m: metrics.pointing_game(torch.rand(2, 16, 16), [[0, 0, 8, 8]]), ValueError,
     r"regions hold 1 images but there are N = 2 maps"),
    ("map of the wrong size for the metric", GapLinearNet,
     lambda m: metrics.deletion(m.eval(), X, torch.rand(2, 8, 8), steps=4, progress=False), ValueError,
     r"maps must have shape \(N, H, W\) = \(2, 16, 16\), got \(2, 8, 8\).*upsample"),
]

PARAMETER_SPEC = {"steps": {"type": int, "min": 1, "max": 500}, "sigma": float, "seed": int,
                  "method": {"choices": ["gradcam", "integrated-gradcam"]}, "profile": {"choices": list(report.PROFILES)}}
GOOD_PARAMETERS = {"steps": 8, "sigma": 0.1, "seed": 0, "method": "gradcam", "profile": "default"}
PARAMETER_CASES = [
    ("steps as a string", {"steps": "8"}, TypeError, r"parameter steps must be int, got str '8'"),
    ("steps as a bool", {"steps": True}, TypeError, r"parameter steps must be int, got bool True"),
    ("steps below the minimum", {"steps": 0}, ValueError, r"parameter steps=0 must be >= 1"),
    ("steps above the maximum", {"steps": 10_000}, ValueError, r"parameter steps=10000 must be <= 500"),
    ("sigma as a string", {"sigma": "0.1"}, TypeError, r"parameter sigma must be float, got str"),
    ("seed as a float", {"seed": 1.5}, TypeError, r"parameter seed must be int, got float 1.5"),
    ("unknown method", {"method": "grad-cam"}, ValueError, r"method='grad-cam' is not allowed; choose from \['gradcam', "),
    ("unknown profile", {"profile": "huge"}, ValueError, r"choose from \['default', 'cpu', 'full'\]"),
]


@pytest.mark.parametrize("factory, call, error, match", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_raises_a_clear_error_and_leaves_no_hook(factory, call, error, match):
    model = factory().eval()
    with pytest.raises(error, match=match):
        call(model)
    assert hook_count(model) == 0, "a hook was left on the model"
    assert torch.is_grad_enabled(), "the caller's grad mode was not restored"


@pytest.mark.parametrize("changes, error, match", [case[1:] for case in PARAMETER_CASES],
                         ids=[case[0] for case in PARAMETER_CASES])
def test_bad_notebook_parameters_fail_at_the_top_of_the_notebook(changes, error, match):
    with pytest.raises(error, match=match):
        report.check_parameters({**GOOD_PARAMETERS, **changes}, PARAMETER_SPEC)


def test_missing_notebook_parameter_is_named():
    values = dict(GOOD_PARAMETERS)
    del values["sigma"]
    with pytest.raises(ValueError, match="parameter 'sigma' is missing"):
        report.check_parameters(values, PARAMETER_SPEC)


def test_the_battery_is_at_least_25_cases():
    assert len(CASES) + len(PARAMETER_CASES) + 1 >= 25


# --------------------------------------------------------------------------- every method, same errors

BAD_CALLS = {
    "NaN pixel": (lambda x: torch.where(x > 0.5, float("nan"), x), None, ValueError, "NaN or Inf"),
    "rank 3": (lambda x: x[0], None, ValueError, r"\(N, C, H, W\)"),
    "empty batch": (lambda x: x[:0], None, ValueError, "empty batch"),
    "uint8 pixels": (lambda x: (x * 255).to(torch.uint8), None, TypeError, "floating-point"),
    "class out of range": (lambda x: x, 7, ValueError, r"out of range .*allowed 0..4"),
    "negative class": (lambda x: x, [0, -2], ValueError, ">= 0, got -2"),
    "target mismatch": (lambda x: x, [0, 1, 2], ValueError, "N = 2"),
}


@pytest.mark.parametrize("bad", list(BAD_CALLS))
@pytest.mark.parametrize("name", sorted(camkit.METHODS))
def test_every_method_rejects_bad_calls_without_leaving_hooks(name, bad):
    model = GapLinearNet().eval()
    change, target, error, match = BAD_CALLS[bad]
    with pytest.raises(error, match=match):
        method(name, model)(change(X), target)
    assert hook_count(model) == 0 and torch.is_grad_enabled()


# --------------------------------------------------------------------------- degenerate but valid

@pytest.mark.parametrize("name", sorted(camkit.METHODS))
def test_all_zero_activations_give_an_all_zero_finite_map(name):
    model = dead_features_net()
    maps = method(name, model)(X, 1)
    assert torch.isfinite(maps).all() and (maps == 0).all()
    assert hook_count(model) == 0


@pytest.mark.parametrize("name", sorted(camkit.METHODS))
def test_black_image_and_constant_image_give_finite_maps(name):
    model = GapLinearNet().eval()
    for x in (torch.zeros(2, 3, 16, 16), torch.full((2, 3, 16, 16), 0.5)):
        maps = method(name, model)(x)
        assert torch.isfinite(maps).all() and maps.abs().max() <= 1


def test_normalize_keeps_zero_and_constant_maps_finite():
    maps = torch.stack([torch.zeros(5, 5), torch.full((5, 5), -2.0), torch.full((5, 5), 1e-30)])
    out = normalize_maps(maps)
    assert torch.isfinite(out).all() and (out == 0).all()
    tiny = torch.tensor([[0.0, 1e-20], [0.0, 0.0]])
    assert torch.isfinite(normalize_maps(tiny)).all()

