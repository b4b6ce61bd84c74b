"""Checks for the camkit classroom assignments (the visible and hidden nbgrader tests call these).

Each ``check_*`` function calls the student's function on seeded random inputs (tiny CNNs built
here) and, where the notebook passes them, on small real photos; it compares the answer with a
reference within a tolerance and prints one line per case that passed. On a failure it raises
:class:`CheckFailed`, whose message says which task and case failed, what was expected and what
came back (Jupyter shows only that message, no traceback), so the student's error, a wrong shape
or a stub that still raises ``NotImplementedError`` never crashes the grader.

The references are camkit's own implementations (the library the course teaches). With
``hidden=True`` a check runs more cases and *switches camkit's implementation off* while the
student's function runs (:func:`camkit_blocked`): an answer that merely calls camkit fails.

The notebooks import this module with a ``sys.path`` tweak (it sits next to the notebook in an
nbgrader release folder, one folder up in the repository).
"""
from __future__ import annotations

import traceback
import warnings
from contextlib import contextmanager
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor, nn

import camkit
import camkit.methods.base
import camkit.methods.single_pass

__all__ = [
    "CheckFailed", "Blocked", "camkit_blocked", "tiny_cnn", "random_images", "photos",
    "check_layer_gradients", "check_grad_cam", "check_upsample_normalize",
    "check_diagonal_derivatives", "check_alpha_general", "check_alpha_exp_trick", "check_gradcampp_map",
    "check_ramp", "check_integrated_gradients", "check_integrated_gradcam", "check_layer_completeness",
    "check_average_drop_increase", "check_pixel_path", "check_evaluation", "check_verdict",
]


# --------------------------------------------------------------------------- failures

class CheckFailed(AssertionError):
    """A check that did not pass: the message is the whole report (Jupyter shows no traceback)."""

    def _render_traceback_(self) -> list[str]:  # IPython uses this instead of a traceback
        return [f"\x1b[31mCheckFailed\x1b[0m", *str(self).splitlines()]


class Blocked(RuntimeError):
    """Raised by a camkit function that the grader switched off for a hidden check."""

    def __init__(self, what: str):
        super().__init__(f"{what} is switched off by the grader in this check")
        self.what = what


def fail(task: str, case: str, expected: str, got: str, hint: Optional[str] = None):
    lines = [f"✘ {task} failed", f"  case:     {case}", f"  expected: {expected}", f"  got:      {got}"]
    if hint:
        lines.append(f"  hint:     {hint}")
    raise CheckFailed("\n".join(lines))


def passed(task: str, case: str, detail: str = "") -> None:
    print(f"✔ {task} · {case}" + (f": {detail}" if detail else ""))


def _student_frame(error: BaseException) -> str:
    """' (in your code, line N: <source>)' for the innermost frame that is notebook code."""
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames if "ipykernel" in f.filename or f.filename.startswith("<")]
    if not mine:
        return ""
    frame = mine[-1]
    return f" (in your code, line {frame.lineno}: {frame.line.strip() if frame.line else '?'})"


def call(task: str, case: str, expected: str, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``, turning anything it raises into a :class:`CheckFailed` report."""
    if not callable(fn):
        fail(task, case, "a function", f"{type(fn).__name__} {fn!r}",
             "define the function in the solution cell above and run that cell")
    try:
        return fn(*args, **kwargs)
    except CheckFailed:
        raise
    except Blocked as error:
        fail(task, case, expected + ", computed by your own code",
             f"a call to {error.what}, which the grader switches off",
             "this task asks you to implement it yourself with torch; do not call camkit's version")
    except NotImplementedError as error:
        fail(task, case, expected, f"NotImplementedError {error or ''}".rstrip(),
             "the function is still the stub: replace `raise NotImplementedError()` with your code")
    except Exception as error:  # any bug in the answer becomes a report, never a grader crash
        fail(task, case, expected, f"{type(error).__name__}: {error}{_student_frame(error)}")


def describe(value) -> str:
    if torch.is_tensor(value):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"{type(value).__name__} {value!r}"[:200]


def compare(task: str, case: str, name: str, got, want: Tensor, *, rtol: float = 1e-4,
            atol: float = 1e-6) -> float:
    """Fail unless ``got`` is a tensor of ``want``'s shape with |got − want| ≤ atol + rtol·max|want|."""
    shape = tuple(want.shape)
    if not torch.is_tensor(got):
        fail(task, case, f"{name}: a torch.Tensor of shape {shape}", describe(got))
    if tuple(got.shape) != shape:
        squeeze = " (one dimension too many or too few?)" if got.numel() == want.numel() else ""
        fail(task, case, f"{name}: shape {shape}", f"shape {tuple(got.shape)}{squeeze}")
    got = got.detach().to("cpu", torch.float64)
    want = want.detach().to("cpu", torch.float64)
    if not torch.isfinite(got).all():
        bad = int((~torch.isfinite(got)).sum())
        fail(task, case, f"{name}: finite values", f"{bad} NaN/Inf entries",
             "guard divisions by zero (an all-zero map or a zero denominator)")
    error = (got - want).abs()
    tolerance = atol + rtol * float(want.abs().max()) if want.numel() else atol
    worst = float(error.max()) if error.numel() else 0.0
    if worst > tolerance:
        index = tuple(int(i) for i in torch.unravel_index(error.argmax(), shape)) if shape else ()
        share = float((error > tolerance).double().mean())
        fail(task, case, f"{name}{list(index) if index else ''} = {float(want[index]):.6g} "
                         f"(every entry within {tolerance:.1e} of the reference)",
             f"{float(got[index]):.6g} there; max |Δ| = {worst:.2e}, {100 * share:.0f} % of the entries off")
    return worst


# --------------------------------------------------------------------------- switching camkit off

def _blocked_code(label: str, name: str):
    """Code of a function that raises :class:`Blocked` (found through sys.modules at call time)."""
    source = (f"def {name}(*args, **kwargs):\n"
              f"    import sys\n"
              f"    raise sys.modules[{__name__!r}].Blocked({label!r})\n")
    namespace: dict = {}
    exec(compile(source, "<switched off by the grader>", "exec"), namespace)
    return namespace[name].__code__


@contextmanager
def camkit_blocked(targets: Iterable[tuple[object, str]]):
    """Switch camkit functions and methods off: calling one raises :class:`Blocked`.

    ``targets`` holds (module or class, attribute) pairs. A module-level function has its code
    swapped in place, so every reference to it (``camkit.x``, ``from camkit import x``) is
    caught; a method is replaced in its class. Everything is restored on exit.
    """
    swapped, replaced = [], []
    try:
        for owner, attr in targets:
            label = f"{getattr(owner, '__name__', owner)}.{attr}"
            if isinstance(owner, type):
                original = owner.__dict__[attr]

                def stub(*args, _label=label, **kwargs):
                    raise Blocked(_label)
                replaced.append((owner, attr, original))
                setattr(owner, attr, stub)
            else:
                function = getattr(owner, attr)
                function = getattr(function, "__wrapped__", function)  # @contextmanager functions
                swapped.append((function, function.__code__))
                function.__code__ = _blocked_code(label, function.__code__.co_name)
        yield
    finally:
        for function, code in swapped:
            function.__code__ = code
        for owner, attr, original in replaced:
            setattr(owner, attr, original)


def _blocks_gradcam():
    core, gm = camkit.methods.base, camkit.methods.single_pass
    targets = [(core.BaseCAM, "__call__"), (core.GradientCAM, "activations_and_gradients"),
               (core.GradientCAM, "compute"), (core.GradientCAM, "combine"), (gm.GradCAM, "channel_weights"),
               (core, "capture_activation"), (core, "normalize_maps"), (core, "upsample_maps")]
    return targets + [(core.BaseCAM, "layer_outputs")]


def _blocks_gradcampp():
    core, gm = camkit.methods.base, camkit.methods.single_pass
    return [(core.BaseCAM, "__call__"), (core.GradientCAM, "combine"),
            (gm.GradCAMPlusPlus, "channel_weights"), (gm, "gradcampp_alpha")]


def _blocks_integrated():
    pm = _need_path_methods()
    core = camkit.methods.base
    return [(core.BaseCAM, "__call__"), (pm.SampledGradientCAM, "compute"), (pm.SampledGradientCAM, "passes"),
            (pm.IntegratedGradCAM, "sample"), (pm.IntegratedGradCAM, "layer_attribution"), (pm, "along_path"),
            (core, "weighted_sum"), (pm, "accumulate"), (core.BaseCAM, "layer_outputs")]


def _blocks_metrics():
    metrics = _need_metrics()
    names = ["keep_confidence", "remove_confidence", "average_drop", "increase_in_confidence", "insertion",
             "deletion", "_pixel_path_curve", "_pixel_rank", "_replace_top"]
    return [(metrics, name) for name in names if hasattr(metrics, name)]


def _path_methods():
    try:
        import camkit.methods.sampled as pm
    except ImportError:
        return None
    return pm


def _need_path_methods():
    pm = _path_methods()
    if pm is None:
        raise CheckFailed("camkit.methods.sampled (IntegratedGradCAM) is not installed; update camkit")
    return pm


def _need_metrics():
    try:
        import camkit.metrics as metrics
    except ImportError:
        raise CheckFailed("camkit.metrics is not installed; update camkit") from None
    return metrics


# --------------------------------------------------------------------------- inputs

class TinyCNN(nn.Module):
    """conv → ReLU → conv (``features``, the target layer) → in-place ReLU → [1×1 conv → ReLU] → GAP → linear.

    The in-place ReLU right after the target layer is deliberate (it is common in real CNNs:
    VGG, ResNet blocks). ``hidden=True`` adds a 1×1 conv + ReLU so the gradient varies over positions.
    """

    def __init__(self, seed: int = 0, classes: int = 5, channels: int = 6, hidden: bool = True):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
                                          nn.Conv2d(8, channels, 3, stride=2, padding=1))
            self.act = nn.ReLU(inplace=True)
            self.hidden = (nn.Sequential(nn.Conv2d(channels, 7, 1), nn.ReLU()) if hidden else nn.Identity())
            self.fc = nn.Linear(7 if hidden else channels, classes)
        self.eval()

    def head(self, activation: Tensor) -> Tensor:
        """Logits from the target layer's output A (the part of the network above the layer)."""
        return self._above(activation.clone())

    def _above(self, activation: Tensor) -> Tensor:
        return self.fc(self.hidden(self.act(activation)).mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self._above(self.features(x))  # the in-place ReLU overwrites the layer's output


def tiny_cnn(seed: int = 0, **kwargs) -> tuple[nn.Module, nn.Module]:
    """A seeded :class:`TinyCNN` in eval mode and its target layer module (``model.features``)."""
    model = TinyCNN(seed, **kwargs)
    return model, model.features


def random_images(n: int, size: int = 16, seed: int = 0) -> Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def random_classes(n: int, classes: int, seed: int) -> Tensor:
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed + 1000))


def _tiny_cases(seeds: Sequence[int]):
    """(label, model, layer, x, classes) for a few seeded tiny CNNs and batches."""
    for seed in seeds:
        n, size = (2, 16) if seed % 2 == 0 else (3, 20)
        model, layer = tiny_cnn(seed, hidden=seed % 3 != 2)
        x = random_images(n, size, seed)
        yield (f"TinyCNN(seed={seed}), random batch {n}×3×{size}×{size}", model, layer, x,
               random_classes(n, 5, seed))




def photos(names: Sequence[str], size: int = 160, device: torch.device | str = "cpu") -> Tensor:
    """The darknet sample photos (``make data``) as an (N, 3, size, size) batch in [0, 1]."""
    from PIL import Image
    from camkit.data.images import darknet_dir
    from camkit.data.zoo import ResizeCrop

    folder = darknet_dir()
    if folder is None:
        raise FileNotFoundError(f"photos {list(names)} are not in a camkit data cache; run `make data` first")
    transform = ResizeCrop(size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch on read-only NumPy arrays of PIL images
        return torch.stack([transform(Image.open(folder / f"{name}.jpg").convert("RGB"))
                            for name in names]).to(device)


def _photo_case(photo) -> list:
    if photo is None:
        return []
    model, layer, x, classes = photo
    return [(f"photos {tuple(x.shape)} on {type(model).__name__}", model, layer, x, classes)]


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def _reference_layer_gradients(model, layer, x, classes):
    cam = camkit.GradCAM(model, layer)
    activation, grads, scores = cam.activations_and_gradients(x, camkit.Targets.parse(classes, len(x), x.device))
    return activation, grads[:, 0], scores[:, 0]


def _expect_pair(task, case, result, names):
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        fail(task, case, f"a tuple ({', '.join(names)})", describe(result))
    return result


# =========================================================================== Assignment 1

def check_layer_gradients(fn: Callable, photo=None, hidden: bool = False) -> None:
    """A1 Task 1: ``fn(model, layer, x, classes) -> (A, g)`` with g = ∂y^c/∂A, hooks removed,
    no ``.grad`` left on the parameters."""
    task = "Task 1 · layer_activation_and_grad"
    cases = list(_tiny_cases([1, 2, 4, 5] if hidden else [0])) + _photo_case(photo)
    for case, model, layer, x, classes in cases:
        activation, grads, _ = _reference_layer_gradients(model, layer, x, classes)
        for p in model.parameters():
            p.grad = None
        hooks = _hooks(model)
        with camkit_blocked(_blocks_gradcam() if hidden else []):
            result = call(task, case, f"(A, g), two tensors of shape {tuple(activation.shape)}",
                          fn, model, layer, x, classes)
        a, g = _expect_pair(task, case, result, ["A", "g"])
        if _hooks(model) != hooks:
            fail(task, case, f"{hooks} hooks on the model after the call (as before it)",
                 f"{_hooks(model)} hooks", "keep the handle of register_forward_hook and call "
                 "handle.remove() in a `finally:` block")
        if any(p.grad is not None for p in model.parameters()):
            fail(task, case, "no .grad on the model's parameters (torch.autograd.grad returns the gradient)",
                 ".grad filled in by .backward()", "use torch.autograd.grad(score, A) instead of score.backward()")
        try:
            da = compare(task, case, "A", a, activation, rtol=1e-4)
            dg = compare(task, case, "g", g, grads, rtol=1e-3, atol=1e-6)
        except CheckFailed as error:
            relu_d = torch.is_tensor(a) and a.shape == activation.shape and (activation < 0).any() and not (a < 0).any()
            if not relu_d:
                raise
            raise CheckFailed(f"{error}\n  hint:     your A has no negative entries: the in-place ReLU after the "
                              "layer changed it; let the hook return output.clone()") from None
        passed(task, case, f"max |ΔA| = {da:.1e}, max |Δg| = {dg:.1e}")


def check_grad_cam(fn: Callable, photo=None, hidden: bool = False) -> None:
    """A1 Task 2: ``fn(model, layer, x, classes)`` -> raw Grad-CAM maps (N, h, w), as camkit.GradCAM
    with ``normalize=False, upsample=False``."""
    task = "Task 2 · grad_cam"
    cases = list(_tiny_cases([1, 2, 3] if hidden else [0])) + _photo_case(photo)
    for case, model, layer, x, classes in cases:
        want = camkit.GradCAM(model, layer)(x, classes, normalize=False, upsample=False)
        with camkit_blocked(_blocks_gradcam() if hidden else []):
            got = call(task, case, f"raw maps of shape {tuple(want.shape)}", fn, model, layer, x, classes)
        hint = None
        if torch.is_tensor(got) and got.shape == want.shape and (got < 0).any():
            hint = "Grad-CAM ends with a ReLU: M = ReLU(Σ_k α_k A^k)"
        try:
            worst = compare(task, case, "M", got, want, rtol=1e-3, atol=1e-6)
        except CheckFailed as error:
            raise CheckFailed(f"{error}\n  hint:     {hint}" if hint else str(error)) from None
        passed(task, case, f"max |ΔM| = {worst:.1e}")


def check_upsample_normalize(fn: Callable, hidden: bool = False) -> None:
    """A1 Task 3: ``fn(maps (N, h, w), size (H, W))`` -> bilinear (align_corners=False), min-max to [0, 1]."""
    task = "Task 3 · upsample_and_normalize"
    seeds = [1, 2, 3] if hidden else [0]
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        h, w = (4, 5) if seed % 2 else (6, 6)
        size = (16, 20) if seed % 2 else (24, 24)
        maps = torch.rand(3, h, w, generator=gen) * (1 + seed)
        maps[1] = 0.0  # an all-zero map must stay zero (no NaN)
        maps[2, : h // 2] = 0.0
        case = f"maps {tuple(maps.shape)} → size {size} (map 1 is all zeros)"
        want = camkit.normalize_maps(camkit.upsample_maps(maps[:, None], size))[:, 0]
        with camkit_blocked(_blocks_gradcam() if hidden else []):
            got = call(task, case, f"maps of shape {tuple(want.shape)} in [0, 1]", fn, maps.clone(), size)
        worst = compare(task, case, "upsampled map", got, want, rtol=1e-5, atol=1e-6)
        passed(task, case, f"max |Δ| = {worst:.1e}")


# =========================================================================== Assignment 2

class QuadraticHead(nn.Module):
    """A smooth head S_c(A) = Σ u_c ⊙ A² + Σ v_c ⊙ A: its second derivative 2u_c is not zero."""

    def __init__(self, shape: Sequence[int], classes: int = 3, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.u = nn.Parameter(0.05 * torch.randn(classes, *shape, generator=gen))
        self.v = nn.Parameter(0.1 * torch.randn(classes, *shape, generator=gen))

    def forward(self, activation: Tensor) -> Tensor:
        return (activation[:, None] ** 2 * self.u).flatten(2).sum(-1) + (activation[:, None] * self.v).flatten(2).sum(-1)

    def derivatives(self, activation: Tensor, c: int) -> tuple[Tensor, Tensor, Tensor]:
        """Exact element-wise ∂Y/∂A, ∂²Y/∂A², ∂³Y/∂A³ of Y = exp(S_c)."""
        u, v = self.u[c].detach(), self.v[c].detach()
        a = activation.detach()
        y = torch.exp(self.forward(a)[0, c])
        g = 2 * u * a + v
        return y * g, y * (g ** 2 + 2 * u), y * (g ** 3 + 6 * u * g)


def _derivative_cases(hidden: bool):
    seeds = [1, 2] if hidden else [0]
    for seed in seeds:
        model, _ = tiny_cnn(seed, hidden=True)
        with torch.no_grad():
            activation = model.features(random_images(1, 4, seed))
        c = seed % 5
        a = activation.clone().requires_grad_(True)
        score = model.head(a)[0, c]
        (g,) = torch.autograd.grad(score, a)
        y = torch.exp(score.detach())
        yield (f"piecewise-linear head (TinyCNN seed={seed}), A {tuple(activation.shape)}, class {c}",
               model.head, activation, c, (y * g, y * g ** 2, y * g ** 3))
        quad = QuadraticHead(activation.shape[1:], seed=seed)
        c = seed % 3
        yield (f"quadratic head (seed={seed}), A {tuple(activation.shape)}, class {c}",
               quad, activation, c, quad.derivatives(activation, c))


def check_diagonal_derivatives(fn: Callable, hidden: bool = False) -> None:
    """A2 Task 1: ``fn(head, A, c) -> (d1, d2, d3)``, the element-wise 1st–3rd derivatives of
    Y = exp(S_c(A)) (S_c = head(A)[0, c]) from higher-order autograd."""
    task = "Task 1 · diagonal_derivatives"
    for case, head, activation, c, want in _derivative_cases(hidden):
        with camkit_blocked(_blocks_gradcampp() if hidden else []):
            result = call(task, case, f"(d1, d2, d3), three tensors of shape {tuple(activation.shape)}",
                          fn, head, activation.clone(), c)
        result = _expect_pair(task, case, result, ["d1", "d2", "d3"])
        worst = max(compare(task, case, name, got, ref, rtol=1e-4, atol=1e-7)
                    for name, got, ref in zip(("d1", "d2", "d3"), result, want))
        passed(task, case, f"max |Δ| = {worst:.1e}")


def _alpha_inputs(seed: int):
    gen = torch.Generator().manual_seed(seed)
    activation = torch.rand(2, 3, 4, 4, generator=gen)
    grads = torch.randn(2, 3, 4, 4, generator=gen)
    grads[grads.abs() < 0.3] = 0.0  # exact zeros, where α must be 0
    activation[1, 2] = 0.0          # a dead channel: Σ A = 0
    activation[0, 0] = 0.125        # Σ A = 2 exactly, and with g = −1 ...
    grads[0, 0, 0, 0] = -1.0        # ... 2g² + (Σ A) g³ = 0 exactly: α must be 0, not inf
    return activation, grads


def check_alpha_general(fn: Callable, hidden: bool = False) -> None:
    """A2 Task 2: ``fn(A, d2, d3)`` -> α = d2 / (2 d2 + Σ_ab A_ab · d3), 0 where d2 = 0 or the denominator is 0."""
    task = "Task 2 · alpha_general"
    moment_alpha = camkit.methods.single_pass.gradcampp_alpha
    for seed in ([1, 2, 3] if hidden else [0]):
        activation, grads = _alpha_inputs(seed)
        gen = torch.Generator().manual_seed(seed + 7)
        d2 = grads ** 2 + (0.1 * torch.rand(grads.shape, generator=gen)) * (grads != 0)
        d3 = grads ** 3 - 0.05 * torch.randn(grads.shape, generator=gen) * (grads != 0)
        d2[0, 0, 0, 0], d3[0, 0, 0, 0] = 0.5, -0.5  # 2·0.5 + (Σ A = 2)·(−0.5) = 0: a zero denominator
        case = f"random A, d2, d3 of shape {tuple(activation.shape)} (seed {seed}, zeros in d2, one zero denominator)"
        want = moment_alpha(activation, d2[:, None], d3[:, None])[:, 0]
        with camkit_blocked(_blocks_gradcampp() if hidden else []):
            got = call(task, case, f"α of shape {tuple(want.shape)}", fn, activation.clone(), d2.clone(), d3.clone())
        worst = compare(task, case, "α", got, want, rtol=1e-5, atol=1e-7)
        passed(task, case, f"max |Δα| = {worst:.1e}")


def check_alpha_exp_trick(fn: Callable, general: Optional[Callable] = None, derivatives: Optional[Callable] = None,
                          hidden: bool = False) -> None:
    """A2 Task 3: ``fn(A, g)`` -> α = g² / (2g² + Σ A · g³) (0 where g = 0), as camkit.gradcampp_alpha;
    with ``general`` and ``derivatives`` also: on a piecewise-linear head it equals the general
    α of autograd's higher-order derivatives."""
    task = "Task 3 · alpha_exp_trick"
    for seed in ([1, 2, 3] if hidden else [0]):
        activation, grads = _alpha_inputs(seed)
        case = f"random A, g of shape {tuple(activation.shape)} (seed {seed}, zeros in g, a dead channel)"
        want = camkit.gradcampp_alpha(activation, grads[:, None])[:, 0]
        with camkit_blocked(_blocks_gradcampp() if hidden else []):
            got = call(task, case, f"α of shape {tuple(want.shape)}", fn, activation.clone(), grads.clone())
        worst = compare(task, case, "α", got, want, rtol=1e-5, atol=1e-7)
        passed(task, case, f"max |Δα| = {worst:.1e}")
    if general is None or derivatives is None:
        return
    for case, head, activation, c, _ in _derivative_cases(hidden):
        if "piecewise" not in case:
            continue
        case = case + ": exponential trick vs higher-order autograd"
        result = _expect_pair(task, case, call(task, case, "(d1, d2, d3)", derivatives, head, activation.clone(), c),
                              ["d1", "d2", "d3"])
        d1, d2, d3 = (t.detach() for t in result)
        g = d1 / torch.exp(head(activation)[0, c].detach())
        want = call(task, case, "α from your alpha_general", general, activation, d2, d3)
        got = call(task, case, "α from your alpha_exp_trick", fn, activation, g)
        worst = compare(task, case, "α (exponential trick)", got, want, rtol=1e-4, atol=1e-7)
        passed(task, case, f"max |Δα| = {worst:.1e}")


def check_gradcampp_map(fn: Callable, photo=None, hidden: bool = False) -> None:
    """A2 Task 4: ``fn(model, layer, x, classes)`` -> raw Grad-CAM++ maps (N, h, w)."""
    task = "Task 4 · gradcampp_map"
    cases = list(_tiny_cases([1, 2, 3] if hidden else [0])) + _photo_case(photo)
    for case, model, layer, x, classes in cases:
        want = camkit.GradCAMPlusPlus(model, layer)(x, classes, normalize=False, upsample=False)
        with camkit_blocked(_blocks_gradcampp() if hidden else []):
            got = call(task, case, f"raw maps of shape {tuple(want.shape)}", fn, model, layer, x, classes)
        worst = compare(task, case, "M", got, want, rtol=1e-3, atol=1e-6)
        passed(task, case, f"max |ΔM| = {worst:.1e}")


# =========================================================================== Assignment 3

def _ramp_prime(z: Tensor) -> Tensor:
    """f′ of f(z) = 1 − ReLU(1 − z) with PyTorch's convention ReLU′(0) = 0: 1 for z < 1, else 0."""
    return (z < 1).to(z.dtype)


def check_ramp(f: Callable, gradient: Callable, hidden: bool = False) -> None:
    """A3 Task 1: ``f(x) = 1 − ReLU(1 − x)`` element-wise and ``gradient(fn, x)`` = dfn/dx element-wise."""
    task = "Task 1 · f and plain_gradient"
    x = torch.tensor([-1.5, -0.2, 0.0, 0.3, 0.7, 0.99, 1.01, 1.5, 2.0, 3.0], dtype=torch.float64)
    case = f"f at x = {[round(v, 2) for v in x.tolist()]}"
    got = call(task, case, "f(x), a tensor like x", f, x.clone())
    compare(task, case, "f(x)", got, 1 - torch.relu(1 - x), rtol=0, atol=1e-12)
    passed(task, case)
    functions = [("f", f, _ramp_prime), ("torch.sin", torch.sin, torch.cos)]
    if hidden:
        functions.append(("x ↦ x³", lambda z: z ** 3, lambda z: 3 * z ** 2))
    for name, fn, prime in functions:
        case = f"plain_gradient({name}, x)"
        got = call(task, case, "df/dx at every x, a tensor like x", gradient, fn, x.clone())
        compare(task, case, f"d{name}/dx", got, prime(x), rtol=1e-9, atol=1e-9)
        passed(task, case)


def _ig_reference(prime: Callable, x: Tensor, baseline: Tensor, steps: int) -> Tensor:
    t = torch.arange(1, steps + 1, dtype=x.dtype) / steps
    points = baseline[None] + t.reshape(-1, *([1] * x.ndim)) * (x - baseline)[None]
    return (x - baseline) * prime(points).mean(0)


def check_integrated_gradients(ig: Callable, f: Callable, hidden: bool = False) -> None:
    """A3 Task 2: ``ig(fn, x, baseline, steps)`` = (x − x′) · (1/m) Σ_{s=1..m} fn′(x′ + (s/m)(x − x′))."""
    task = "Task 2 · integrated_gradients"
    x = torch.tensor([0.5, 1.0, 2.0, 3.0, -0.5], dtype=torch.float64)
    cases = [("f", f, _ramp_prime, 0.0, 8), ("f", f, _ramp_prime, 0.0, 50), ("torch.sin", torch.sin, torch.cos, 0.25, 16)]
    if hidden:
        cases += [("f", f, _ramp_prime, -1.0, 7), ("x ↦ x³", lambda z: z ** 3, lambda z: 3 * z ** 2, 0.5, 33)]
    for name, fn, prime, base, steps in cases:
        baseline = torch.full_like(x, base)
        case = f"{name}, x = {x.tolist()}, baseline {base}, m = {steps}"
        got = call(task, case, "the attribution, a tensor like x", ig, fn, x.clone(), baseline.clone(), steps)
        compare(task, case, "IG", got, _ig_reference(prime, x, baseline, steps), rtol=1e-9, atol=1e-9)
        passed(task, case)


def _integrated_cases(photo, hidden: bool, steps: int):
    for case, model, layer, x, classes in _tiny_cases([1, 2] if hidden else [0]):
        gen = torch.Generator().manual_seed(len(case))
        baselines = [("black", torch.zeros_like(x))]
        if hidden:
            baselines.append(("random", torch.rand(x.shape, generator=gen)))
        for name, baseline in baselines:
            yield f"{case}, {name} baseline, m = {steps}", model, layer, x, classes, baseline, steps
    if photo is not None:
        model, layer, x, classes, photo_steps = photo
        yield (f"photos {tuple(x.shape)}, black baseline, m = {photo_steps}", model, layer, x, classes,
               torch.zeros_like(x), photo_steps)


def check_integrated_gradcam(fn: Callable, photo=None, hidden: bool = False) -> None:
    """A3 Task 3: ``fn(model, layer, x, classes, baseline, steps)`` -> raw Integrated Grad-CAM (N, h, w),
    as camkit.IntegratedGradCAM(steps=m, baseline=x′) with ``normalize=False, upsample=False``."""
    task = "Task 3 · integrated_gradcam"
    pm = _need_path_methods()
    for case, model, layer, x, classes, baseline, steps in _integrated_cases(photo, hidden, 6):
        cam = pm.IntegratedGradCAM(model, layer, steps=steps, baseline=baseline, internal_batch_size=None)
        want = cam(x, classes, normalize=False, upsample=False)
        with camkit_blocked(_blocks_integrated() if hidden else []):
            got = call(task, case, f"raw maps of shape {tuple(want.shape)}", fn, model, layer, x, classes,
                       baseline, steps)
        worst = compare(task, case, "M", got, want, rtol=2e-3, atol=1e-6)
        passed(task, case, f"max |ΔM| = {worst:.1e}")


def check_layer_completeness(fn: Callable, photo=None, hidden: bool = False) -> None:
    """A3 Task 4: ``fn(model, layer, x, classes, baseline, steps) -> (plain, integrated, change)``, each (N,)."""
    task = "Task 4 · layer_completeness"
    pm = _need_path_methods()
    for case, model, layer, x, classes, baseline, steps in _integrated_cases(photo, hidden, 10):
        cam = pm.IntegratedGradCAM(model, layer, steps=steps, baseline=baseline, internal_batch_size=None)
        attribution, delta = cam.layer_attribution(x, classes, return_delta=True)
        integrated = attribution.flatten(1).sum(1)
        change = integrated - delta
        activation, grads, _ = _reference_layer_gradients(model, layer, x, classes)
        base_activation, _, _ = _reference_layer_gradients(model, layer, baseline, classes)
        plain = (grads * (activation - base_activation)).flatten(1).sum(1)
        with camkit_blocked(_blocks_integrated() if hidden else []):
            result = call(task, case, f"(plain, integrated, change), three tensors of shape ({len(x)},)",
                          fn, model, layer, x, classes, baseline, steps)
        got = _expect_pair(task, case, result, ["plain", "integrated", "change"])
        scale = float(change.abs().max())
        worst = max(compare(task, case, name, value, ref, rtol=2e-3, atol=1e-5 * scale)
                    for name, value, ref in zip(("plain", "integrated", "change"), got, (plain, integrated, change)))
        passed(task, case, f"max |Δ| = {worst:.1e}")


# =========================================================================== Assignment 4

def _metric_cases(photo, hidden: bool):
    for case, model, layer, x, classes in _tiny_cases([1, 2] if hidden else [0]):
        gen = torch.Generator().manual_seed(len(case))
        maps = torch.rand(x.shape[0], *x.shape[-2:], generator=gen)
        maps[0, : x.shape[-2] // 2] = 0.0  # ties: half of the first map is zero
        if hidden:
            maps[-1] = 0.5  # a constant map: the ranking falls back to raster order
        yield case + ", random maps with ties", model, x, maps, classes
    if photo is not None:
        model, x, maps, classes = photo
        yield f"photos {tuple(x.shape)}, Grad-CAM maps", model, x, maps, classes


def check_average_drop_increase(fn: Callable, photo=None, hidden: bool = False) -> None:
    """A4 Task 1: ``fn(model, x, maps, classes) -> (average_drop, increase)`` in %, from the softmax
    probability of class c on x and on x ⊙ E."""
    task = "Task 1 · average_drop_increase"
    metrics = _need_metrics()
    for case, model, x, maps, classes in _metric_cases(photo, hidden):
        conf = metrics.keep_confidence(model, x, maps, classes, progress=False)
        want = torch.stack([metrics.average_drop(conf), metrics.increase_in_confidence(conf)])
        with camkit_blocked(_blocks_metrics() if hidden else []):
            result = call(task, case, "(average_drop, increase), two numbers in %", fn, model, x, maps, classes)
        ad, ic = _expect_pair(task, case, result, ["average_drop", "increase"])
        try:
            got = torch.tensor([float(ad), float(ic)], dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            fail(task, case, "two numbers (floats or 0-d tensors)", f"{describe(ad)} and {describe(ic)}")
        worst = compare(task, case, "(average_drop, increase)", got, want, rtol=1e-4, atol=1e-4)
        passed(task, case, f"AD = {float(want[0]):.2f} %, IC = {float(want[1]):.1f} %, max |Δ| = {worst:.1e}")


def check_pixel_path(fn: Callable, auc: Callable, photo=None, hidden: bool = False, n_steps: int = 8) -> None:
    """A4 Task 2: ``fn(model, x, maps, classes, canvas, n_steps, insert) -> (N, n_steps + 1)`` softmax
    probabilities along the deletion (insert=False) or insertion (insert=True) path, and
    ``auc(curve) -> (N,)`` trapezoid areas over the fractions k / n_steps."""
    task = "Task 2 · pixel_path and auc"
    metrics = _need_metrics()
    for case, model, x, maps, classes in _metric_cases(photo, hidden):
        for insert in (False, True):
            canvas = metrics.blur(x) if insert else torch.zeros_like(x)
            reference = (metrics.insertion if insert else metrics.deletion)(
                model, x, maps, classes, steps=n_steps, canvas=canvas, progress=False)
            label = f"{case}, {'insertion onto a blurred' if insert else 'deletion to a black'} canvas, n_steps = {n_steps}"
            with camkit_blocked(_blocks_metrics() if hidden else []):
                curve = call(task, label, f"scores of shape {tuple(reference.y.shape)}", fn, model, x, maps,
                             classes, canvas, n_steps, insert)
                worst = compare(task, label, "curve", curve, reference.y, rtol=1e-4, atol=1e-5)
                area = call(task, label, f"AUCs of shape {tuple(reference.auc.shape)}", auc, reference.y.clone())
            compare(task, label, "auc", area, reference.auc, rtol=1e-5, atol=1e-6)
            passed(task, label, f"max |Δ| = {worst:.1e}")


METRIC_KEYS = ("average_drop", "increase", "deletion_auc", "insertion_auc")


def check_evaluation(results, model: nn.Module, x: Tensor, maps: dict, classes: Tensor, n_steps: int,
                     hidden: bool = False) -> None:
    """A4 Task 3: ``results[method]`` holds average_drop and increase (%, over all images) and
    deletion_auc and insertion_auc (one per image); recomputed with camkit (AUCs of the first
    image, of the last one when hidden)."""
    task = "Task 3 · results"
    metrics = _need_metrics()
    if not isinstance(results, dict) or set(results) != set(maps):
        fail(task, "the results dictionary", f"a dict with one entry per method {sorted(maps)}",
             describe(results) if not isinstance(results, dict) else f"keys {sorted(results)}")
    last = x.shape[0] - 1
    rows = slice(last, last + 1) if hidden else slice(0, 1)
    for method, method_maps in maps.items():
        case = f"{method} on photos {tuple(x.shape)} (deletion/insertion: image {rows.start})"
        entry = results[method]
        if not isinstance(entry, dict) or set(entry) != set(METRIC_KEYS):
            fail(task, case, f"a dict with keys {list(METRIC_KEYS)}", describe(entry) if not isinstance(entry, dict)
                 else f"keys {sorted(entry)}")
        conf = metrics.keep_confidence(model, x, method_maps, classes, progress=False)
        want = {"average_drop": metrics.average_drop(conf).reshape(1), "increase": metrics.increase_in_confidence(conf).reshape(1)}
        want["deletion_auc"] = metrics.deletion(model, x[rows], method_maps[rows], classes[rows], steps=n_steps,
                                                canvas="black", progress=False).auc
        want["insertion_auc"] = metrics.insertion(model, x[rows], method_maps[rows], classes[rows], steps=n_steps,
                                                  canvas="blur", progress=False).auc
        for key in METRIC_KEYS:
            try:
                value = torch.as_tensor(entry[key], dtype=torch.float64).reshape(-1)
            except (TypeError, ValueError, RuntimeError):
                fail(task, case, f"{key}: numbers", describe(entry[key]))
            if key.endswith("auc"):
                if value.numel() != x.shape[0]:
                    fail(task, case, f"{key}: one value per image ({x.shape[0]})", describe(entry[key]))
                value = value[rows]
            compare(task, case, key, value, want[key], rtol=1e-3, atol=1e-4)
        passed(task, case, ", ".join(f"{k} = {float(torch.as_tensor(entry[k], dtype=torch.float64).mean()):.3g}"
                                     for k in METRIC_KEYS))


def verdict(results: dict) -> tuple[str, dict]:
    """The method that wins most of the four metrics (AD lower, IC higher, deletion lower, insertion
    higher are better); a tie goes to the larger mean insertion − deletion AUC."""
    methods = list(results)
    mean = {m: {k: float(torch.as_tensor(results[m][k], dtype=torch.float64).mean()) for k in METRIC_KEYS}
            for m in methods}
    better = {"average_drop": min, "increase": max, "deletion_auc": min, "insertion_auc": max}
    wins = {m: 0 for m in methods}
    for key, pick in better.items():
        values = [mean[m][key] for m in methods]
        best = pick(values)
        winners = [m for m in methods if mean[m][key] == best]
        if len(winners) == 1:
            wins[winners[0]] += 1
    top = max(wins.values())
    tied = [m for m in methods if wins[m] == top]
    gap = {m: mean[m]["insertion_auc"] - mean[m]["deletion_auc"] for m in methods}
    return max(tied, key=lambda m: gap[m]), wins


def check_verdict(more_faithful, results: dict) -> None:
    """A4 Task 4: ``more_faithful`` names the method the decision rule picks from ``results``."""
    task = "Task 4 · more_faithful"
    if not isinstance(results, dict) or not results:
        fail(task, "the results of Task 3", "a filled-in results dict", describe(results))
    expected, wins = verdict(results)
    case = f"metrics won per method {wins}"
    if more_faithful != expected:
        fail(task, case, f"more_faithful = {expected!r} (the rule: most metrics won, ties by insertion − deletion)",
             describe(more_faithful))
    passed(task, case, f"{expected!r}")
