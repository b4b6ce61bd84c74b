"""Checks for the camkit classroom assignments, run where the student's code cannot reach them.

A test cell calls, e.g., ``checks.check_grad_cam(grad_cam, photo=(model_name, photos, image_size))``.
Three processes take part (notebooks/assignments/README.md, "How grading is isolated"):

* the **notebook kernel** (the client, this module imported by the notebook) compares nothing. It
  sends the *source code* of ``grad_cam`` (with the notebook functions it calls and the imports it
  uses; values such as a results dict as data) to the grader and prints the report it gets back.
  Whatever the notebook does to this module in memory changes no verdict.
* the **grader** G is this file run as a fresh interpreter (``python checks.py serve``), started
  once per kernel, or by the autograder before the kernel exists. It loads the checks from disk,
  builds the cases, computes the references with camkit *after* the student's code has run, and
  compares. No student code ever runs in G.
* the **runner** R is forked from G for each check before any reference exists (a fresh
  interpreter where ``fork`` is unavailable). It installs a sandbox, executes the student's source,
  calls the functions on the cases and writes the answers (tensors, numbers, what was raised, the
  hooks left on the model) to a file that G reads with ``torch.load(weights_only=True)``.

In **hidden** checks the sandbox switches camkit's methods, metrics and statistics off (calling one
raises), refuses to import captum, torchcam, pytorch_grad_cam and other attribution libraries, refuses
fresh imports of camkit (after ``del sys.modules[...]``), and vetoes reading their source files; in
every check it vetoes writing files, starting processes, ctypes and inspecting the garbage collector.

Under ``nbgrader autograde`` (the course's ``nbgrader_config.py``) and ``python checks.py grade``,
the score of a graded cell does not come from the kernel at all: :class:`GradedExecute` asks G which
checks ran while the cell executed and whether they passed, and rewrites the cell's outputs from
G's log. A kernel that swallows errors, patches this module or skips a check scores nothing.

Each ``check_*`` call prints one line per case that passed; a failure raises :class:`CheckFailed`,
whose message says which task and case failed, what was expected and what came back.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import json
import linecache
import os
import select
import shutil
import socket
import subprocess
import symtable
import sys
import tempfile
import textwrap
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

import camkit

__all__ = [
    "CheckFailed", "photos", "tiny_cnn", "random_images", "QuadraticHead", "submit", "grade_notebook",
    "check_layer_gradients", "check_grad_cam", "check_upsample_normalize",
    "check_diagonal_derivatives", "check_alpha_general", "check_alpha_exp_trick", "check_gradcampp_map",
    "check_ramp", "check_integrated_gradients", "check_integrated_gradcam", "check_layer_completeness",
    "check_average_drop_increase", "check_pixel_path", "check_evaluation", "check_verdict",
    "check_cluster_means", "check_cluster_interval", "check_claim_verdict", "check_claim_report",
]

HERE = Path(__file__).resolve()
SOCKET_ENV = "CAMKIT_GRADER_SOCKET"     # set by GradedExecute: the kernel talks to that grader
TIMEOUT = float(os.environ.get("CAMKIT_GRADER_TIMEOUT", "600"))   # seconds one check may run
HEAD_SCALE = 30.0                       # the tiny CNNs' linear layer × this: Σ A·g of order 1
VISIBLE_SEED = 28                       # the visible tiny case: every map part positive, part clipped
#: Attribution libraries a hidden check refuses to import (camkit's own methods are switched off).
PEERS = ("captum", "torchcam", "pytorch_grad_cam", "zennit", "shap", "lime", "torchray", "quantus",
         "innvestigate", "lucent", "alibi", "interpret", "tf_explain", "tf_keras_vis", "grad_cam")
#: camkit modules whose functions and methods a hidden check switches off.
BLOCKED_MODULES = ("camkit.methods.base", "camkit.methods.single_pass", "camkit.methods.cam",
                   "camkit.methods.sampled", "camkit.methods.gradient_free", "camkit.methods.guided",
                   "camkit.methods.layers", "camkit.metrics", "camkit.report.stats", "camkit.report.claims")


# =========================================================================== reports

class CheckFailed(AssertionError):
    """A check that did not pass: the message is the whole report (Jupyter shows no traceback)."""

    def _render_traceback_(self) -> list[str]:  # IPython uses this instead of a traceback
        return ["\x1b[31mCheckFailed\x1b[0m", *str(self).splitlines()]


def fail(task: str, case: str, expected: str, got: str, hint: Optional[str] = None):
    lines = [f"✘ {task} failed", f"  case:     {case}", f"  expected: {expected}", f"  got:      {got}"]
    if hint:
        lines.append(f"  hint:     {hint}")
    raise CheckFailed("\n".join(lines))


def describe(value) -> str:
    if torch.is_tensor(value):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, Raised):
        return f"{value.type}: {value.message}"
    return f"{type(value).__name__} {value!r}"[:200]


#: In margin mode (:func:`margins`) every comparison appends (case, name, max|Δ| / tolerance) here.
_RATIOS: Optional[list] = None


def compare(task: str, case: str, name: str, got, want: Tensor, *, rtol: float = 1e-4,
            atol: float = 1e-6) -> float:
    """Fail unless ``got`` is a tensor of ``want``'s shape with |got − want| ≤ atol + rtol·max|want|."""
    shape = tuple(want.shape)
    if not torch.is_tensor(got):
        _ratio(case, name, float("inf"))
        fail(task, case, f"{name}: a torch.Tensor of shape {shape}", describe(got))
    if tuple(got.shape) != shape:
        _ratio(case, name, float("inf"))
        squeeze = " (one dimension too many or too few?)" if got.numel() == want.numel() else ""
        fail(task, case, f"{name}: shape {shape}", f"shape {tuple(got.shape)}{squeeze}")
    got = got.detach().to("cpu", torch.float64)
    want = want.detach().to("cpu", torch.float64)
    if not torch.isfinite(got).all():
        _ratio(case, name, float("inf"))
        bad = int((~torch.isfinite(got)).sum())
        fail(task, case, f"{name}: finite values", f"{bad} NaN/Inf entries",
             "guard divisions by zero (an all-zero map or a zero denominator)")
    error = (got - want).abs()
    tolerance = atol + rtol * float(want.abs().max()) if want.numel() else atol
    worst = float(error.max()) if error.numel() else 0.0
    _ratio(case, name, worst / tolerance)
    if worst > tolerance:
        index = tuple(int(i) for i in torch.unravel_index(error.argmax(), shape)) if shape else ()
        share = float((error > tolerance).double().mean())
        fail(task, case, f"{name}{list(index) if index else ''} = {float(want[index]):.6g} "
                         f"(every entry within {tolerance:.1e} of the reference)",
             f"{float(got[index]):.6g} there; max |Δ| = {worst:.2e}, {100 * share:.0f} % of the entries off")
    return worst


def _ratio(case: str, name: str, value: float) -> None:
    if _RATIOS is not None:
        _RATIOS.append((case, name, value))


# =========================================================================== inputs (kernel and grader)

class TinyCNN(nn.Module):
    """conv → ReLU → conv (``features``, the target layer) → in-place ReLU → [1×1 conv → ReLU] → GAP → linear.

    The in-place ReLU right after the target layer is deliberate (VGG and ResNet blocks have one), so a
    hook that does not clone the layer's output fails. The 1×1 conv + ReLU (``hidden=True``) makes the
    gradient vary over positions. The head is scaled (hidden layer × 3, linear layer × ``HEAD_SCALE``) so
    that Σ_ab A_ab · g_ij is of order 1: with PyTorch's default initialisation it is ≈ 0.01, every
    Grad-CAM++ α is ≈ ½ and "α = ½" would pass. ``fail=True`` makes the forward pass raise after the
    target layer (the check that a hook is removed in ``finally:``).
    """

    def __init__(self, seed: int = 0, classes: int = 5, channels: int = 6, hidden: bool = True,
                 fail: bool = False):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
                                          nn.Conv2d(8, channels, 3, stride=2, padding=1))
            self.act = nn.ReLU(inplace=True)
            self.hidden = (nn.Sequential(nn.Conv2d(channels, 7, 1), nn.ReLU()) if hidden else nn.Identity())
            self.fc = nn.Linear(7 if hidden else channels, classes)
        with torch.no_grad():
            if hidden:
                self.hidden[0].weight.mul_(3.0)
            self.fc.weight.mul_(HEAD_SCALE)
        self.fail = fail
        self.eval()

    def head(self, activation: Tensor) -> Tensor:
        """Logits from the target layer's output A (the part of the network above the layer)."""
        return self._above(activation.clone())

    def _above(self, activation: Tensor) -> Tensor:
        return self.fc(self.hidden(self.act(activation)).mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        activation = self.features(x)
        if self.fail:
            raise RuntimeError("the forward pass failed after the target layer (on purpose: "
                               "the check that your hook is removed in `finally:`)")
        return self._above(activation)  # the in-place ReLU overwrites the layer's output


def tiny_cnn(seed: int = 0, **kwargs) -> tuple[nn.Module, nn.Module]:
    """A seeded :class:`TinyCNN` in eval mode and its target layer module (``model.features``)."""
    model = TinyCNN(seed, **kwargs)
    return model, model.features


def random_images(n: int, size: int = 16, seed: int = 0) -> Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def random_classes(n: int, classes: int, seed: int) -> Tensor:
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed + 1000))


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


PHOTO_MODELS = ("efficientnet_lite0", "efficientnet_lite2")
PHOTO_NAMES = ("dog", "eagle", "giraffe", "horses", "kite", "person")
_PHOTO_CACHE: dict = {}


def _photo(spec) -> tuple[nn.Module, nn.Module, Tensor, Tensor, str]:
    """(model, layer, x, classes, label) for a (model_name, photo names, size) spec sent by a notebook."""
    try:
        name, names, size = spec[0], list(spec[1]), int(spec[2])
    except (TypeError, ValueError, IndexError):
        raise CheckFailed(f"photo={spec!r}: expected (model_name, photo names, image size)") from None
    if name not in PHOTO_MODELS or not names or any(n not in PHOTO_NAMES for n in names) or not 64 <= size <= 512:
        raise CheckFailed(f"photo={spec!r}: the model must be one of {PHOTO_MODELS}, the photos among "
                          f"{PHOTO_NAMES} and the size in [64, 512]")
    key = (name, tuple(names), size)
    if key not in _PHOTO_CACHE:
        zoo = camkit.zoo.load_model(name, "cpu")
        x = photos(names, size)
        with torch.no_grad():
            classes = zoo.model(x).argmax(1)
        layer = dict(zoo.model.named_modules())[zoo.target_layer]
        _PHOTO_CACHE[key] = (zoo.model, layer, x, classes, f"photos {tuple(x.shape)} on {name} at {zoo.target_layer}")
    return _PHOTO_CACHE[key]


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


# =========================================================================== cases

@dataclass
class Raised:
    """What the student's code raised in the runner (rebuilt in the grader from the answers file)."""
    type: str
    message: str
    where: str = ""
    blocked: str = ""     # the camkit / peer function or import the grader switched off

    def pack(self) -> dict:
        return {"type": self.type, "message": self.message, "where": self.where, "blocked": self.blocked}


@dataclass
class Case:
    """One case of a check: ``drive`` runs in the runner (student code), ``judge`` in the grader."""
    label: str
    drive: Callable[[dict], dict]           # answers: functions by parameter name -> record (runner)
    judge: Callable[[dict], str]            # record -> detail for the ✔ line, or raise CheckFailed (grader)


@dataclass
class Spec:
    """A check: its task label, its parameters (functions or values), and its cases."""
    task: str
    functions: tuple[str, ...]              # parameters that are student functions (sent as source)
    values: tuple[str, ...]                 # parameters that are values (sent as data)
    build: Callable[..., list[Case]]        # (values, **kwargs) -> cases
    options: tuple[str, ...] = ("hidden",)  # keyword arguments a notebook may pass


CHECKS: dict[str, Spec] = {}


def _spec(name: str, task: str, functions=(), values=(), options=("hidden",)):
    def register(build):
        CHECKS[name] = Spec(task, tuple(functions), tuple(values), build, tuple(options))
        return build
    return register


class _Runtime:
    """The runner's view of the student's code: calls that turn anything raised into a record."""

    blocked_calls: list = []
    refused_imports: list = []


def call(fn, *args, **kwargs):
    """``fn(*args)`` in the runner; what it raises is returned as a :class:`Raised` (never propagated)."""
    if isinstance(fn, Raised):
        return fn
    if not callable(fn):
        return Raised("NotCallable", f"{describe(fn)} is not a function")
    try:
        return fn(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001  (SystemExit from student code is a failure, not an exit)
        blocked = getattr(error, "_camkit_blocked", "")
        return Raised(type(error).__name__, str(error)[:500], _student_frame(error), blocked)


def _student_frame(error: BaseException) -> str:
    """' (in your code, line N of its cell: <source>)' for the innermost frame that is student code."""
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames if f.filename in _STUDENT_FILES]
    if not mine:
        return ""
    frame = mine[-1]
    text = linecache.getline(frame.filename, frame.lineno).strip()
    return f" (in {frame.name}, line {frame.lineno} of its cell: {text or '?'})"


_STUDENT_FILES: set = set()


def value(task: str, case: str, expected: str, got):
    """The student's answer, or a report of what the code raised instead."""
    if isinstance(got, Raised):
        if got.blocked:
            fail(task, case, expected + ", computed by your own code",
                 f"{got.blocked}, which the grader switches off",
                 "this task asks you to implement it yourself with torch: do not call camkit or another "
                 "attribution library (captum, torchcam, pytorch-grad-cam), and do not re-import them")
        if got.type == "NotImplementedError":
            fail(task, case, expected, f"NotImplementedError {got.message}".rstrip(),
                 "the function is still the stub: replace `raise NotImplementedError()` with your code")
        if got.type == "SourceError":
            fail(task, case, expected, got.message)
        fail(task, case, expected, f"{got.type}: {got.message}{got.where}")
    return got


def _expect_tuple(task, case, result, names):
    result = value(task, case, f"a tuple ({', '.join(names)})", result)
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        fail(task, case, f"a tuple ({', '.join(names)})", describe(result))
    return result


def _tiny_cases(seeds: Sequence[int]):
    """(label, model, layer, x, classes) for a few seeded tiny CNNs and batches."""
    for seed in seeds:
        n, size = (2, 16) if seed % 2 == 0 else (3, 20)
        model, layer = tiny_cnn(seed, hidden=seed % 3 != 2)
        x = random_images(n, size, seed)
        yield (f"TinyCNN(seed={seed}), random batch {n}×3×{size}×{size}", model, layer, x, random_classes(n, 5, seed))


def _photo_cases(photo) -> list:
    if photo is None:
        return []
    model, layer, x, classes, label = _photo(photo)
    return [(label, model, layer, x, classes)]


def _reference_layer_gradients(model, layer, x, classes):
    cam = camkit.GradCAM(model, layer)
    activation, grads, scores = cam.activations_and_gradients(x, camkit.Targets.parse(classes, len(x), x.device))
    return activation, grads[:, 0], scores[:, 0]


# =========================================================================== Assignment 1

@_spec("check_layer_gradients", "Task 1 · layer_activation_and_grad", functions=("fn",), options=("hidden", "photo"))
def _layer_gradients(values, hidden=False, photo=None):
    task = "Task 1 · layer_activation_and_grad"
    cases = []
    for label, model, layer, x, classes in list(_tiny_cases([1, 2, 4, 5] if hidden else [VISIBLE_SEED])) + _photo_cases(photo):
        def drive(f, model=model, layer=layer, x=x, classes=classes):
            for p in model.parameters():
                p.grad = None
            before = _hooks(model)
            out = call(f["fn"], model, layer, x.clone(), classes.clone())
            return {"out": out, "hooks_before": before, "hooks_after": _hooks(model),
                    "grads_left": any(p.grad is not None for p in model.parameters())}

        def judge(r, label=label, model=model, layer=layer, x=x, classes=classes):
            activation, grads, _ = _reference_layer_gradients(model, layer, x, classes)
            a, g = _expect_tuple(task, label, r["out"], ["A", "g"])
            if r["hooks_after"] != r["hooks_before"]:
                fail(task, label, f"{r['hooks_before']} hooks on the model after the call (as before it)",
                     f"{r['hooks_after']} hooks", "keep the handle of register_forward_hook and call "
                     "handle.remove() in a `finally:` block")
            if r["grads_left"]:
                fail(task, label, "no .grad on the model's parameters (torch.autograd.grad returns the gradient)",
                     ".grad filled in by .backward()", "use torch.autograd.grad(score, A) instead of score.backward()")
            try:
                da = compare(task, label, "A", a, activation, rtol=1e-4)
                dg = compare(task, label, "g", g, grads, rtol=1e-3, atol=1e-6)
            except CheckFailed as error:
                relu_d = torch.is_tensor(a) and a.shape == activation.shape and (activation < 0).any() and not (a < 0).any()
                if not relu_d:
                    raise
                raise CheckFailed(f"{error}\n  hint:     your A has no negative entries: the in-place ReLU after the "
                                  "layer changed it; let the hook return output.clone()") from None
            return f"max |ΔA| = {da:.1e}, max |Δg| = {dg:.1e}"
        cases.append(Case(label, drive, judge))
    for seed in ([3, 6] if hidden else [0]):  # the forward pass raises: no hook may stay behind
        model, layer = tiny_cnn(seed, fail=True)
        x, classes = random_images(2, 16, seed), random_classes(2, 5, seed)
        label = f"TinyCNN(seed={seed}) whose forward pass raises after the target layer"

        def drive(f, model=model, layer=layer, x=x, classes=classes):
            before = _hooks(model)
            out = call(f["fn"], model, layer, x.clone(), classes.clone())
            return {"out": out, "hooks_before": before, "hooks_after": _hooks(model)}

        def judge(r, label=label):
            out = r["out"]
            if isinstance(out, Raised) and (out.blocked or out.type in ("NotImplementedError", "SourceError")):
                value(task, label, "the model's error to reach the caller", out)
            if r["hooks_after"] != r["hooks_before"]:
                fail(task, label, f"{r['hooks_before']} hooks on the model after the failed call (as before it)",
                     f"{r['hooks_after']} hooks: the hook stayed on the layer when the forward pass raised",
                     "remove the hook in a `finally:` block, so it goes even when model(x) raises")
            return "the error reached the caller and no hook stayed behind" if isinstance(out, Raised) else \
                "no hook stayed behind"
        cases.append(Case(label, drive, judge))
    return cases


@_spec("check_grad_cam", "Task 2 · grad_cam", functions=("fn",), options=("hidden", "photo"))
def _grad_cam(values, hidden=False, photo=None):
    task = "Task 2 · grad_cam"
    cases = []
    for label, model, layer, x, classes in list(_tiny_cases([1, 2, 3] if hidden else [VISIBLE_SEED])) + _photo_cases(photo):
        def judge(r, label=label, model=model, layer=layer, x=x, classes=classes):
            want = camkit.GradCAM(model, layer)(x, classes, normalize=False, upsample=False)
            got = value(task, label, f"raw maps of shape {tuple(want.shape)}", r["out"])
            hint = None
            if torch.is_tensor(got) and got.shape == want.shape and (got < 0).any():
                hint = "Grad-CAM ends with a ReLU: M = ReLU(Σ_k α_k A^k)"
            elif torch.is_tensor(got) and got.shape == want.shape and not got.any():
                hint = "your maps are all zero; the reference is not"
            try:
                worst = compare(task, label, "M", got, want, rtol=1e-3, atol=1e-6)
            except CheckFailed as error:
                raise CheckFailed(f"{error}\n  hint:     {hint}" if hint else str(error)) from None
            return f"max |ΔM| = {worst:.1e}"
        cases.append(Case(label, _drive_map(model, layer, x, classes), judge))
    return cases


def _drive_map(model, layer, x, classes, *extra):
    def drive(f):
        return {"out": call(f["fn"], model, layer, x.clone(), classes.clone(), *extra)}
    return drive


@_spec("check_upsample_normalize", "Task 3 · upsample_and_normalize", functions=("fn",))
def _upsample_normalize(values, hidden=False):
    task = "Task 3 · upsample_and_normalize"
    cases = []
    for seed in ([1, 2, 3] if hidden else [0]):
        gen = torch.Generator().manual_seed(seed)
        h, w = (4, 5) if seed % 2 else (6, 6)
        size = (16, 20) if seed % 2 else (24, 24)
        maps = torch.rand(3, h, w, generator=gen) * (1 + seed)
        maps[1] = 0.0  # an all-zero map must stay zero (no NaN)
        maps[2, : h // 2] = 0.0
        label = f"maps {tuple(maps.shape)} → size {size} (map 1 is all zeros)"

        def drive(f, maps=maps, size=size):
            return {"out": call(f["fn"], maps.clone(), size)}

        def judge(r, label=label, maps=maps, size=size):
            want = camkit.normalize_maps(camkit.upsample_maps(maps[:, None], size))[:, 0]
            got = value(task, label, f"maps of shape {tuple(want.shape)} in [0, 1]", r["out"])
            return f"max |Δ| = {compare(task, label, 'upsampled map', got, want, rtol=1e-5, atol=1e-6):.1e}"
        cases.append(Case(label, drive, judge))
    return cases


# =========================================================================== Assignment 2

def _derivative_cases(hidden: bool):
    for seed in ([1, 2] if hidden else [0]):
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


@_spec("check_diagonal_derivatives", "Task 1 · diagonal_derivatives", functions=("fn",))
def _diagonal_derivatives(values, hidden=False):
    task = "Task 1 · diagonal_derivatives"
    cases = []
    for label, head, activation, c, want in _derivative_cases(hidden):
        def drive(f, head=head, activation=activation, c=c):
            return {"out": call(f["fn"], head, activation.clone(), c)}

        def judge(r, label=label, activation=activation, want=want):
            got = _expect_tuple(task, label, r["out"], ["d1", "d2", "d3"])
            worst = max(compare(task, label, name, g, ref, rtol=1e-4, atol=1e-7)
                        for name, g, ref in zip(("d1", "d2", "d3"), got, want))
            return f"max |Δ| = {worst:.1e}"
        cases.append(Case(label, drive, judge))
    return cases


def _alpha_inputs(seed: int):
    gen = torch.Generator().manual_seed(seed)
    activation = torch.rand(2, 3, 4, 4, generator=gen)
    grads = torch.randn(2, 3, 4, 4, generator=gen)
    grads[grads.abs() < 0.3] = 0.0  # exact zeros, where α must be 0
    activation[1, 2] = 0.0          # a dead channel: Σ A = 0
    activation[0, 0] = 0.125        # Σ A = 2 exactly, and with g = −1 ...
    grads[0, 0, 0, 0] = -1.0        # ... 2g² + (Σ A) g³ = 0 exactly: α must be 0, not inf
    return activation, grads


@_spec("check_alpha_general", "Task 2 · alpha_general", functions=("fn",))
def _alpha_general(values, hidden=False):
    task = "Task 2 · alpha_general"
    cases = []
    for seed in ([1, 2, 3] if hidden else [0]):
        activation, grads = _alpha_inputs(seed)
        gen = torch.Generator().manual_seed(seed + 7)
        d2 = grads ** 2 + (0.1 * torch.rand(grads.shape, generator=gen)) * (grads != 0)
        d3 = grads ** 3 - 0.05 * torch.randn(grads.shape, generator=gen) * (grads != 0)
        d2[0, 0, 0, 0], d3[0, 0, 0, 0] = 0.5, -0.5  # 2·0.5 + (Σ A = 2)·(−0.5) = 0: a zero denominator
        label = f"random A, d2, d3 of shape {tuple(activation.shape)} (seed {seed}, zeros in d2, one zero denominator)"

        def drive(f, a=activation, d2=d2, d3=d3):
            return {"out": call(f["fn"], a.clone(), d2.clone(), d3.clone())}

        def judge(r, label=label, a=activation, d2=d2, d3=d3):
            want = camkit.methods.single_pass.gradcampp_alpha(a, d2[:, None], d3[:, None])[:, 0]
            got = value(task, label, f"α of shape {tuple(want.shape)}", r["out"])
            return f"max |Δα| = {compare(task, label, 'α', got, want, rtol=1e-5, atol=1e-7):.1e}"
        cases.append(Case(label, drive, judge))
    return cases


@_spec("check_alpha_exp_trick", "Task 3 · alpha_exp_trick", functions=("fn", "general", "derivatives"))
def _alpha_exp_trick(values, hidden=False):
    task = "Task 3 · alpha_exp_trick"
    cases = []
    for seed in ([1, 2, 3] if hidden else [0]):
        activation, grads = _alpha_inputs(seed)
        label = f"random A, g of shape {tuple(activation.shape)} (seed {seed}, zeros in g, a dead channel)"

        def drive(f, a=activation, g=grads):
            return {"out": call(f["fn"], a.clone(), g.clone())}

        def judge(r, label=label, a=activation, g=grads):
            want = camkit.gradcampp_alpha(a, g[:, None])[:, 0]
            got = value(task, label, f"α of shape {tuple(want.shape)}", r["out"])
            return f"max |Δα| = {compare(task, label, 'α', got, want, rtol=1e-5, atol=1e-7):.1e}"
        cases.append(Case(label, drive, judge))
    for label, head, activation, c, _ in _derivative_cases(hidden):
        if "piecewise" not in label:
            continue
        label = label + ": exponential trick vs higher-order autograd"

        def drive(f, head=head, activation=activation, c=c):
            derivs = call(f["derivatives"], head, activation.clone(), c)
            if isinstance(derivs, Raised) or not isinstance(derivs, (tuple, list)) or len(derivs) != 3:
                return {"derivs": derivs}
            d1, d2, d3 = (t.detach() if torch.is_tensor(t) else t for t in derivs)
            if not all(torch.is_tensor(t) for t in (d1, d2, d3)):
                return {"derivs": derivs}
            g = d1 / torch.exp(head(activation)[0, c].detach())
            return {"derivs": (d1, d2, d3), "general": call(f["general"], activation.clone(), d2, d3),
                    "trick": call(f["fn"], activation.clone(), g)}

        def judge(r, label=label):
            _expect_tuple(task, label, r["derivs"], ["d1", "d2", "d3"])
            want = value(task, label, "α from your alpha_general", r["general"])
            got = value(task, label, "α from your alpha_exp_trick", r["trick"])
            if not torch.is_tensor(want):
                fail(task, label, "α from your alpha_general: a tensor", describe(want))
            return f"max |Δα| = {compare(task, label, 'α (exponential trick)', got, want, rtol=1e-4, atol=1e-7):.1e}"
        cases.append(Case(label, drive, judge))
    return cases


@_spec("check_gradcampp_map", "Task 4 · gradcampp_map", functions=("fn",), options=("hidden", "photo"))
def _gradcampp_map(values, hidden=False, photo=None):
    task = "Task 4 · gradcampp_map"
    cases = []
    for label, model, layer, x, classes in list(_tiny_cases([1, 2, 3] if hidden else [VISIBLE_SEED])) + _photo_cases(photo):
        def judge(r, label=label, model=model, layer=layer, x=x, classes=classes):
            want = camkit.GradCAMPlusPlus(model, layer)(x, classes, normalize=False, upsample=False)
            got = value(task, label, f"raw maps of shape {tuple(want.shape)}", r["out"])
            return f"max |ΔM| = {compare(task, label, 'M', got, want, rtol=1e-3, atol=1e-6):.1e}"
        cases.append(Case(label, _drive_map(model, layer, x, classes), judge))
    return cases


# =========================================================================== Assignment 3

def _ramp_prime(z: Tensor) -> Tensor:
    """f′ of f(z) = 1 − ReLU(1 − z) with PyTorch's convention ReLU′(0) = 0: 1 for z < 1, else 0."""
    return (z < 1).to(z.dtype)


_RAMP_X = [-1.5, -0.2, 0.0, 0.3, 0.7, 0.99, 1.01, 1.5, 2.0, 3.0]


@_spec("check_ramp", "Task 1 · f and plain_gradient", functions=("f", "gradient"))
def _ramp(values, hidden=False):
    task = "Task 1 · f and plain_gradient"
    x = torch.tensor(_RAMP_X, dtype=torch.float64)
    label = f"f at x = {_RAMP_X}"
    cases = [Case(label, lambda f: {"out": call(f["f"], x.clone())},
                  lambda r: (compare(task, label, "f(x)", value(task, label, "f(x), a tensor like x", r["out"]),
                                     1 - torch.relu(1 - x), rtol=0, atol=1e-12), "")[1])]
    functions = [("f", None, _ramp_prime), ("torch.sin", torch.sin, torch.cos)]
    if hidden:
        functions.append(("x ↦ x³", lambda z: z ** 3, lambda z: 3 * z ** 2))
    for name, fn, prime in functions:
        label = f"plain_gradient({name}, x)"

        def drive(f, fn=fn):
            return {"out": call(f["gradient"], f["f"] if fn is None else fn, x.clone())}

        def judge(r, label=label, name=name, prime=prime):
            got = value(task, label, "df/dx at every x, a tensor like x", r["out"])
            compare(task, label, f"d{name}/dx", got, prime(x), rtol=1e-9, atol=1e-9)
            return ""
        cases.append(Case(label, drive, judge))
    return cases


def _ig_reference(prime: Callable, x: Tensor, baseline: Tensor, steps: int) -> Tensor:
    t = torch.arange(1, steps + 1, dtype=x.dtype) / steps
    points = baseline[None] + t.reshape(-1, *([1] * x.ndim)) * (x - baseline)[None]
    return (x - baseline) * prime(points).mean(0)


@_spec("check_integrated_gradients", "Task 2 · integrated_gradients", functions=("ig", "f"))
def _integrated_gradients(values, hidden=False):
    task = "Task 2 · integrated_gradients"
    x = torch.tensor([0.5, 1.0, 2.0, 3.0, -0.5], dtype=torch.float64)
    specs = [("f", None, _ramp_prime, 0.0, 8), ("f", None, _ramp_prime, 0.0, 50),
             ("torch.sin", torch.sin, torch.cos, 0.25, 16)]
    if hidden:
        specs += [("f", None, _ramp_prime, -1.0, 7), ("x ↦ x³", lambda z: z ** 3, lambda z: 3 * z ** 2, 0.5, 33)]
    cases = []
    for name, fn, prime, base, steps in specs:
        baseline = torch.full_like(x, base)
        label = f"{name}, x = {x.tolist()}, baseline {base}, m = {steps}"

        def drive(f, fn=fn, baseline=baseline, steps=steps):
            return {"out": call(f["ig"], f["f"] if fn is None else fn, x.clone(), baseline.clone(), steps)}

        def judge(r, label=label, prime=prime, baseline=baseline, steps=steps):
            got = value(task, label, "the attribution, a tensor like x", r["out"])
            compare(task, label, "IG", got, _ig_reference(prime, x, baseline, steps), rtol=1e-9, atol=1e-9)
            return ""
        cases.append(Case(label, drive, judge))
    return cases


def _integrated_cases(photo, hidden: bool, steps: int):
    for label, model, layer, x, classes in _tiny_cases([1, 2] if hidden else [VISIBLE_SEED]):
        gen = torch.Generator().manual_seed(len(label))
        baselines = [("black", torch.zeros_like(x))]
        if hidden:
            baselines.append(("random", torch.rand(x.shape, generator=gen)))
        for name, baseline in baselines:
            yield f"{label}, {name} baseline, m = {steps}", model, layer, x, classes, baseline, steps
    if photo is not None:
        model, layer, x, classes, label = _photo(photo[:3])
        photo_steps = int(photo[3]) if len(photo) > 3 else steps
        if not 1 <= photo_steps <= 64:
            raise CheckFailed(f"photo steps {photo_steps}: expected 1 to 64")
        yield f"{label}, black baseline, m = {photo_steps}", model, layer, x, classes, torch.zeros_like(x), photo_steps


@_spec("check_integrated_gradcam", "Task 3 · integrated_gradcam", functions=("fn",), options=("hidden", "photo"))
def _integrated_gradcam(values, hidden=False, photo=None):
    task = "Task 3 · integrated_gradcam"
    cases = []
    for label, model, layer, x, classes, baseline, steps in _integrated_cases(photo, hidden, 6):
        def judge(r, label=label, model=model, layer=layer, x=x, classes=classes, baseline=baseline, steps=steps):
            cam = camkit.IntegratedGradCAM(model, layer, steps=steps, baseline=baseline, internal_batch_size=None)
            want = cam(x, classes, normalize=False, upsample=False)
            got = value(task, label, f"raw maps of shape {tuple(want.shape)}", r["out"])
            return f"max |ΔM| = {compare(task, label, 'M', got, want, rtol=2e-3, atol=1e-6):.1e}"
        cases.append(Case(label, _drive_map(model, layer, x, classes, baseline.clone(), steps), judge))
    return cases


@_spec("check_layer_completeness", "Task 4 · layer_completeness", functions=("fn",), options=("hidden", "photo"))
def _layer_completeness(values, hidden=False, photo=None):
    task = "Task 4 · layer_completeness"
    cases = []
    for label, model, layer, x, classes, baseline, steps in _integrated_cases(photo, hidden, 10):
        def judge(r, label=label, model=model, layer=layer, x=x, classes=classes, baseline=baseline, steps=steps):
            cam = camkit.IntegratedGradCAM(model, layer, steps=steps, baseline=baseline, internal_batch_size=None)
            attribution, delta = cam.layer_attribution(x, classes, return_delta=True)
            integrated = attribution.flatten(1).sum(1)
            change = integrated - delta
            activation, grads, _ = _reference_layer_gradients(model, layer, x, classes)
            base_activation, _, _ = _reference_layer_gradients(model, layer, baseline, classes)
            plain = (grads * (activation - base_activation)).flatten(1).sum(1)
            got = _expect_tuple(task, label, r["out"], ["plain", "integrated", "change"])
            scale = float(change.abs().max())
            worst = max(compare(task, label, name, v, ref, rtol=2e-3, atol=1e-5 * scale)
                        for name, v, ref in zip(("plain", "integrated", "change"), got, (plain, integrated, change)))
            return f"max |Δ| = {worst:.1e}"
        cases.append(Case(label, _drive_map(model, layer, x, classes, baseline.clone(), steps), judge))
    return cases


# =========================================================================== Assignment 4

def _metric_cases(photo, hidden: bool):
    for label, model, layer, x, classes in _tiny_cases([1, 2] if hidden else [VISIBLE_SEED]):
        gen = torch.Generator().manual_seed(len(label))
        maps = torch.rand(x.shape[0], *x.shape[-2:], generator=gen)
        maps[0, : x.shape[-2] // 2] = 0.0  # ties: half of the first map is zero
        if hidden:
            maps[-1] = 0.5  # a constant map: the ranking falls back to raster order
        yield label + ", random maps with ties", model, x, maps, classes
    if photo is not None:
        model, x, maps, classes, label = _photo_maps(photo)
        yield f"{label}, {photo[3]} maps", model, x, maps, classes


def _photo_maps(spec):
    """(model, x, maps, classes, label) for a (model_name, photos, size, method) spec."""
    if len(spec) != 4 or spec[3] not in camkit.METHODS:
        raise CheckFailed(f"photo={spec!r}: expected (model_name, photos, image size, method name)")
    model, layer, x, classes, label = _photo(spec[:3])
    key = ("maps", spec[0], tuple(spec[1]), int(spec[2]), spec[3])
    if key not in _PHOTO_CACHE:
        _PHOTO_CACHE[key] = camkit.METHODS[spec[3]](model, layer)(x, classes)
    return model, x, _PHOTO_CACHE[key], classes, label


@_spec("check_average_drop_increase", "Task 1 · average_drop_increase", functions=("fn",), options=("hidden", "photo"))
def _average_drop_increase(values, hidden=False, photo=None):
    task = "Task 1 · average_drop_increase"
    metrics = camkit.metrics
    cases = []
    for label, model, x, maps, classes in _metric_cases(photo, hidden):
        def drive(f, model=model, x=x, maps=maps, classes=classes):
            return {"out": call(f["fn"], model, x.clone(), maps.clone(), classes.clone())}

        def judge(r, label=label, model=model, x=x, maps=maps, classes=classes):
            conf = metrics.keep_confidence(model, x, maps, classes, progress=False)
            want = torch.stack([metrics.average_drop(conf), metrics.increase_in_confidence(conf)])
            ad, ic = _expect_tuple(task, label, r["out"], ["average_drop", "increase"])
            try:
                got = torch.tensor([float(ad), float(ic)], dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                fail(task, label, "two numbers (floats or 0-d tensors)", f"{describe(ad)} and {describe(ic)}")
            worst = compare(task, label, "(average_drop, increase)", got, want, rtol=1e-4, atol=1e-4)
            return f"AD = {float(want[0]):.2f} %, IC = {float(want[1]):.1f} %, max |Δ| = {worst:.1e}"
        cases.append(Case(label, drive, judge))
    return cases


@_spec("check_pixel_path", "Task 2 · pixel_path and auc", functions=("fn", "auc"),
       options=("hidden", "photo", "n_steps"))
def _pixel_path(values, hidden=False, photo=None, n_steps=8):
    task = "Task 2 · pixel_path and auc"
    metrics = camkit.metrics
    n_steps = int(n_steps)
    if not 2 <= n_steps <= 64:
        raise CheckFailed(f"n_steps={n_steps}: expected 2 to 64")
    cases = []
    for label, model, x, maps, classes in _metric_cases(photo, hidden):
        for insert in (False, True):
            canvas = metrics.blur(x) if insert else torch.zeros_like(x)
            case = f"{label}, {'insertion onto a blurred' if insert else 'deletion to a black'} canvas, n_steps = {n_steps}"

            def drive(f, model=model, x=x, maps=maps, classes=classes, canvas=canvas, insert=insert):
                curve = call(f["fn"], model, x.clone(), maps.clone(), classes.clone(), canvas.clone(), n_steps, insert)
                return {"curve": curve}

            def judge(r, case=case, model=model, x=x, maps=maps, classes=classes, canvas=canvas, insert=insert):
                reference = (metrics.insertion if insert else metrics.deletion)(
                    model, x, maps, classes, steps=n_steps, canvas=canvas, progress=False)
                curve = value(task, case, f"scores of shape {tuple(reference.y.shape)}", r["curve"])
                return f"max |Δ| = {compare(task, case, 'curve', curve, reference.y, rtol=1e-4, atol=1e-5):.1e}"
            cases.append(Case(case, drive, judge))
    # the trapezoid areas, on curves the grader chooses (so a wrong curve cannot hide a wrong area)
    for rows, points in ([(3, 9)] + ([(2, 5), (4, 17)] if hidden else [])):
        curves = torch.rand(rows, points, generator=torch.Generator().manual_seed(points))
        case = f"auc of {rows} random curves with {points} points (fractions 0, 1/{points - 1}, ..., 1)"

        def drive(f, curves=curves):
            return {"out": call(f["auc"], curves.clone())}

        def judge(r, case=case, curves=curves):
            want = torch.trapezoid(curves, torch.linspace(0, 1, curves.shape[1]), dim=1)
            got = value(task, case, f"areas of shape {tuple(want.shape)}", r["out"])
            return f"max |Δ| = {compare(task, case, 'auc', got, want, rtol=1e-5, atol=1e-6):.1e}"
        cases.append(Case(case, drive, judge))
    return cases


METRIC_KEYS = ("average_drop", "increase", "deletion_auc", "insertion_auc")


@_spec("check_evaluation", "Task 3 · results", values=("results",), options=("hidden", "photo", "n_steps"))
def _evaluation(values, hidden=False, photo=None, n_steps=8):
    """``results[method]`` holds average_drop and increase (%, over all images) and deletion_auc and
    insertion_auc (one per image); recomputed with camkit (AUCs of the first image, of the last one
    when hidden). ``photo`` = (model_name, photos, size, methods)."""
    task = "Task 3 · results"
    metrics = camkit.metrics
    results = values["results"]
    if photo is None or len(photo) != 4 or not isinstance(photo[3], (list, tuple)):
        raise CheckFailed("check_evaluation needs photo=(model_name, photos, image_size, methods)")
    n_steps = int(n_steps)
    methods = list(photo[3])
    if not isinstance(results, dict) or set(results) != set(methods):
        fail(task, "the results dictionary", f"a dict with one entry per method {sorted(methods)}",
             describe(results) if not isinstance(results, dict) else f"keys {sorted(results)}")
    cases = []
    for method in methods:
        model, x, method_maps, classes, label = _photo_maps((*photo[:3], method))
        last = x.shape[0] - 1
        rows = slice(last, last + 1) if hidden else slice(0, 1)
        case = f"{method} on {label} (deletion/insertion: image {rows.start})"

        def judge(r, case=case, method=method, model=model, x=x, method_maps=method_maps, classes=classes, rows=rows):
            entry = results[method]
            if not isinstance(entry, dict) or set(entry) != set(METRIC_KEYS):
                fail(task, case, f"a dict with keys {list(METRIC_KEYS)}", describe(entry) if not isinstance(entry, dict)
                     else f"keys {sorted(entry)}")
            conf = metrics.keep_confidence(model, x, method_maps, classes, progress=False)
            want = {"average_drop": metrics.average_drop(conf).reshape(1),
                    "increase": metrics.increase_in_confidence(conf).reshape(1)}
            want["deletion_auc"] = metrics.deletion(model, x[rows], method_maps[rows], classes[rows], steps=n_steps,
                                                    canvas="black", progress=False).auc
            want["insertion_auc"] = metrics.insertion(model, x[rows], method_maps[rows], classes[rows], steps=n_steps,
                                                      canvas="blur", progress=False).auc
            for key in METRIC_KEYS:
                try:
                    got = torch.as_tensor(entry[key], dtype=torch.float64).reshape(-1)
                except (TypeError, ValueError, RuntimeError):
                    fail(task, case, f"{key}: numbers", describe(entry[key]))
                if key.endswith("auc"):
                    if got.numel() != x.shape[0]:
                        fail(task, case, f"{key}: one value per image ({x.shape[0]})", describe(entry[key]))
                    got = got[rows]
                compare(task, case, key, got, want[key], rtol=1e-3, atol=1e-4)
            return ", ".join(f"{k} = {float(torch.as_tensor(entry[k], dtype=torch.float64).mean()):.3g}"
                             for k in METRIC_KEYS)
        cases.append(Case(case, None, judge))
    return cases


def verdict(results: dict) -> tuple[str, dict]:
    """The method that wins most of the four metrics (AD lower, IC higher, deletion lower, insertion
    higher are better); a tie goes to the larger mean insertion − deletion AUC."""
    methods = list(results)
    mean = {m: {k: float(torch.as_tensor(results[m][k], dtype=torch.float64).mean()) for k in METRIC_KEYS}
            for m in methods}
    better = {"average_drop": min, "increase": max, "deletion_auc": min, "insertion_auc": max}
    wins = {m: 0 for m in methods}
    for key, pick in better.items():
        best = pick(mean[m][key] for m in methods)
        winners = [m for m in methods if mean[m][key] == best]
        if len(winners) == 1:
            wins[winners[0]] += 1
    top = max(wins.values())
    tied = [m for m in methods if wins[m] == top]
    gap = {m: mean[m]["insertion_auc"] - mean[m]["deletion_auc"] for m in methods}
    return max(tied, key=lambda m: gap[m]), wins


@_spec("check_verdict", "Task 4 · more_faithful", values=("more_faithful", "results"))
def _verdict(values, hidden=False):
    task = "Task 4 · more_faithful"
    more_faithful, results = values["more_faithful"], values["results"]
    if not isinstance(results, dict) or not results:
        fail(task, "the results of Task 3", "a filled-in results dict", describe(results))
    try:
        expected, wins = verdict(results)
    except (KeyError, TypeError, ValueError, RuntimeError):
        fail(task, "the results of Task 3", f"a dict method -> {{{', '.join(METRIC_KEYS)}}}", describe(results))
    case = f"metrics won per method {wins}"

    def judge(r):
        if more_faithful != expected:
            fail(task, case, f"more_faithful = {expected!r} (the rule: most metrics won, ties by insertion − deletion)",
                 describe(more_faithful))
        return repr(expected)
    return [Case(case, None, judge)]


# =========================================================================== Assignment 5

def _claim_data(seed: int, groups: int, effect: float = 0.0, spread: float = 1.0, noise: float = 1.0,
                sizes: Optional[Sequence[int]] = None):
    """Per-image scores of methods A and B on images grouped by source object: (a, b, clusters).

    Every object g has its own effect (a shift shared by all its images, sd ``spread``) and its own
    number of images; labels are strings in a shuffled order, so clusters are not contiguous.
    """
    gen = torch.Generator().manual_seed(seed)
    if sizes is None:
        sizes = (1 + torch.randint(0, 7, (groups,), generator=gen)).tolist()
    shift = effect + spread * torch.randn(groups, generator=gen, dtype=torch.float64)
    labels, diffs = [], []
    for g, n in enumerate(sizes):
        labels += [f"object-{g:02d}"] * n
        diffs.append(shift[g] + noise * torch.randn(n, generator=gen, dtype=torch.float64))
    diffs = torch.cat(diffs)
    base = 50 + 10 * torch.randn(len(diffs), generator=gen, dtype=torch.float64)
    order = torch.randperm(len(diffs), generator=gen)
    a, b = (base + diffs)[order], base[order]
    return a, b, [labels[i] for i in order.tolist()]


def _claim_cases(hidden: bool):
    """(label, a, b, clusters, higher_is_better, margin): the grouped data sets of the checks."""
    cases = [("12 objects, 1–7 images each, A better", 5, 12, 1.5, 1.0, 1.0, True, 1.0),
             ("4 objects (too few for a verdict), a large effect", 13, 4, 4.0, 0.3, 0.5, True, 1.0),
             ("10 objects, a tiny effect inside a wide margin", 17, 10, -0.05, 0.05, 0.1, False, 1.0)]
    if hidden:
        cases += [("8 objects, no effect", 11, 8, 0.0, 0.6, 1.0, False, 0.3),
                  ("8 objects, no effect, a wide margin", 11, 8, 0.0, 0.6, 1.0, False, 2.0),
                  ("9 objects, B better", 19, 9, -2.0, 0.8, 1.0, True, 0.5),
                  ("6 objects, one image each", 23, 6, 1.0, 0.5, 0.2, True, 0.5),
                  ("7 objects, A better", 29, 7, -1.5, 0.4, 1.0, False, 0.5)]
    for label, seed, groups, effect, spread, noise, higher, margin in cases:
        sizes = [1] * groups if "one image each" in label else None
        a, b, clusters = _claim_data(seed, groups, effect, spread, noise, sizes)
        yield label, a, b, clusters, higher, margin


def _stats():
    stats = camkit.stats
    for name in ("unit_means", "paired_test", "decide", "MIN_GROUPS"):
        if not hasattr(stats, name):
            raise CheckFailed(f"camkit.stats.{name} is missing: update camkit (the checks compare with it)")
    return stats


def _reference_interval(a, b, clusters, higher, level=0.95):
    test = _stats().paired_test(a.numpy(), b.numpy(), clusters, higher_is_better=higher, level=level)
    return test


def _reference_verdict(a, b, clusters, higher, margin) -> str:
    stats = _stats()
    test = stats.paired_test(a.numpy(), b.numpy(), clusters, higher_is_better=higher, margin=margin)
    if test.n_units < stats.MIN_GROUPS:
        return "inconclusive"
    alpha = getattr(stats, "ALPHA", 0.05)
    return stats.decide("superiority", different=test.p_diff < alpha, equivalent=test.p_equiv < alpha / 2,
                        favours_a=test.estimate > 0)


@_spec("check_cluster_means", "Task 1 · cluster_means", functions=("fn",))
def _cluster_means(values, hidden=False):
    task = "Task 1 · cluster_means"
    cases = []
    for label, a, b, clusters, higher, _ in _claim_cases(hidden):
        d = a - b if higher else b - a

        def drive(f, d=d, clusters=clusters):
            return {"out": call(f["fn"], d.clone(), list(clusters))}

        def judge(r, label=label, d=d, clusters=clusters):
            means, counts = _stats().unit_means(d.numpy(), clusters)
            want = torch.as_tensor(means, dtype=torch.float64)
            got = value(task, label, f"{len(want)} cluster means, in order of first appearance", r["out"])
            got = torch.as_tensor(got, dtype=torch.float64) if isinstance(got, (list, tuple)) else got
            return f"max |Δ| = {compare(task, label, 'means', got, want, rtol=1e-9, atol=1e-9):.1e}"
        cases.append(Case(label, drive, judge))
    return cases


def _as_numbers(task, case, got, names):
    got = _expect_tuple(task, case, got, names)
    try:
        return torch.tensor([float(v) for v in got], dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        fail(task, case, f"{len(names)} numbers ({', '.join(names)})", ", ".join(describe(v) for v in got))


@_spec("check_cluster_interval", "Task 2 · cluster_t_interval", functions=("fn",))
def _cluster_interval(values, hidden=False):
    task = "Task 2 · cluster_t_interval"
    cases = []
    for label, a, b, clusters, higher, _ in _claim_cases(hidden):
        for level in ((0.95, 0.9) if hidden else (0.95,)):
            case = f"{label} ({'higher' if higher else 'lower'} is better), level {level}"

            def drive(f, a=a, b=b, clusters=clusters, higher=higher, level=level):
                return {"out": call(f["fn"], a.clone(), b.clone(), list(clusters), higher, level)}

            def judge(r, case=case, a=a, b=b, clusters=clusters, higher=higher, level=level):
                test = _reference_interval(a, b, clusters, higher, level)
                want = torch.tensor([test.estimate, test.low, test.high], dtype=torch.float64)
                got = _as_numbers(task, case, r["out"], ["estimate", "low", "high"])
                compare(task, case, "(estimate, low, high)", got, want, rtol=1e-6, atol=1e-9)
                return f"θ̂ = {test.estimate:.3f}, [{test.low:.3f}, {test.high:.3f}] on {test.df} degrees of freedom"
            cases.append(Case(case, drive, judge))
    return cases


@_spec("check_claim_verdict", "Task 3 · claim_verdict", functions=("fn",))
def _claim_verdict(values, hidden=False):
    task = "Task 3 · claim_verdict"
    cases = []
    for label, a, b, clusters, higher, margin in _claim_cases(hidden):
        case = f"{label} ({'higher' if higher else 'lower'} is better), margin δ = {margin}"

        def drive(f, a=a, b=b, clusters=clusters, higher=higher, margin=margin):
            return {"out": call(f["fn"], a.clone(), b.clone(), list(clusters), higher, margin)}

        def judge(r, case=case, a=a, b=b, clusters=clusters, higher=higher, margin=margin):
            want = _reference_verdict(a, b, clusters, higher, margin)
            got = value(task, case, f"the verdict {want!r}", r["out"])
            if got != want:
                fail(task, case, f"{want!r} (camkit.stats' rules: fewer than {_stats().MIN_GROUPS} objects → "
                     "inconclusive; interval inside (−δ, δ) → equivalent; above 0 → reproduced; below 0 → "
                     "contradicted; else inconclusive)", describe(got))
            return repr(want)
        cases.append(Case(case, drive, judge))
    return cases


CLAIM_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle", "grace_hopper", "china", "flower",
                "quokka", "dog", "eagle", "giraffe", "horses", "kite", "person")


def claim_scores(model_name: str = "efficientnet_lite0", photo_names: Sequence[str] = CLAIM_PHOTOS[:10],
                 size: int = 128, views: int = 3) -> dict:
    """Per-image Average Drop (%) of Grad-CAM++ (A) and Grad-CAM (B) on ``views`` crops of each photo.

    Each photo is one source object; its crops (the whole photo, then windows of 3/4 of its width
    sliding from left to right) are the images of that object. Returns {"a", "b" (tensors of
    per-image drops), "clusters" (the photo of each image), "classes" (top-1 class names)}.
    """
    from PIL import Image
    from camkit.data.zoo import ResizeCrop

    if model_name not in PHOTO_MODELS or not 2 <= int(views) <= 6 or not 64 <= int(size) <= 320 or \
            any(n not in CLAIM_PHOTOS for n in photo_names):
        raise CheckFailed(f"claim data ({model_name!r}, {list(photo_names)}, {size}, {views}): the model must be one "
                          f"of {PHOTO_MODELS}, the photos among {CLAIM_PHOTOS}, size 64–320 and 2–6 views")
    key = ("claim", model_name, tuple(photo_names), int(size), int(views))
    if key in _PHOTO_CACHE:
        return _PHOTO_CACHE[key]
    zoo = camkit.zoo.load_model(model_name, "cpu")
    transform = ResizeCrop(int(size))
    images, clusters = [], []
    for photo in camkit.data.photos(list(photo_names)):
        image = Image.fromarray(photo.image.copy())
        width, height = image.size
        crops = [image]
        window = int(0.75 * width)
        for k in range(int(views) - 1):
            left = round(k * (width - window) / max(1, int(views) - 2))
            crops.append(image.crop((left, 0, left + window, height)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            images += [transform(crop) for crop in crops]
        clusters += [photo.name] * len(crops)
    x = torch.stack(images)
    layer = zoo.target_layer
    with torch.no_grad():
        classes = zoo.model(x).argmax(1)
    scores = {}
    for name in ("gradcam++", "gradcam"):
        maps = camkit.METHODS[name](zoo.model, layer)(x, classes)
        confidence = camkit.metrics.keep_confidence(zoo.model, x, maps, classes, progress=False)
        scores[name] = camkit.metrics.average_drop(confidence, per_image=True).double()
    result = {"a": scores["gradcam++"], "b": scores["gradcam"], "clusters": clusters,
              "classes": [zoo.classes[c] for c in classes]}
    _PHOTO_CACHE[key] = result
    return result


@_spec("check_claim_report", "Task 4 · report", values=("report",), options=("hidden", "photo", "margin"))
def _claim_report(values, hidden=False, photo=None, margin=2.0):
    """``report`` = {"estimate", "low", "high", "verdict"} for the claim "Grad-CAM++ has a lower Average Drop
    than Grad-CAM" on the notebook's data (photo = (model_name, photo names, size, views)), recomputed here."""
    task = "Task 4 · report"
    report = values["report"]
    if photo is None or len(photo) != 4:
        raise CheckFailed("check_claim_report needs photo=(model_name, photo names, image size, views)")
    margin = float(margin)
    case = f"{int(photo[3])} crops of each of {len(photo[1])} photos, lower is better, margin δ = {margin:g}"

    def judge(r):
        if not isinstance(report, dict) or set(report) != {"estimate", "low", "high", "verdict"}:
            fail(task, case, "a dict with keys estimate, low, high, verdict", describe(report))
        data = claim_scores(photo[0], list(photo[1]), int(photo[2]), int(photo[3]))
        a, b, clusters = data["a"], data["b"], data["clusters"]
        test = _reference_interval(a, b, clusters, False)
        want = torch.tensor([test.estimate, test.low, test.high], dtype=torch.float64)
        got = _as_numbers(task, case, [report["estimate"], report["low"], report["high"]], ["estimate", "low", "high"])
        compare(task, case, "(estimate, low, high)", got, want, rtol=1e-6, atol=1e-9)
        expected = _reference_verdict(a, b, clusters, False, margin)
        if report["verdict"] != expected:
            fail(task, case, f"verdict {expected!r}", describe(report["verdict"]))
        return f"{expected}: θ̂ = {test.estimate:.2f} [{test.low:.2f}, {test.high:.2f}] points"
    return [Case(case, None, judge)]


# =========================================================================== the sandbox (runner side)

class _BlockedError(RuntimeError):
    pass


def _stub_for(label: str, name: str = "switched_off"):
    """A function that raises; its code has no free variables (so it can replace any function's code)
    and raises by itself (the student's code cannot make it return)."""
    source = (f"def {name}(*args, **kwargs):\n"
              f"    import sys\n"
              f"    try:\n"
              f"        sys.modules['__main__']._Runtime.blocked_calls.append({label!r})\n"
              f"    except Exception:\n"
              f"        pass\n"
              f"    error = RuntimeError({label!r} + ' is switched off by the grader in this check')\n"
              f"    error._camkit_blocked = {label!r}\n"
              f"    raise error\n")
    namespace: dict = {}
    exec(compile(source, "<switched off by the grader>", "exec"), namespace)
    return namespace[name]


def _switch_off_camkit() -> list[str]:
    """Replace every function and method of :data:`BLOCKED_MODULES` by a stub that raises.

    Module-level functions get the stub's code swapped in (so ``from camkit import x`` taken anywhere
    is caught); methods are replaced in their classes. The originals are not kept: the runner exits.
    """
    import importlib
    switched = []
    for name in BLOCKED_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for attr, obj in list(vars(module).items()):
            label = f"{name}.{attr}"
            if inspect.isfunction(obj) and obj.__module__ == name:
                target = getattr(obj, "__wrapped__", obj)
                if not target.__code__.co_freevars and inspect.isfunction(target):
                    target.__code__ = _stub_for(label, target.__code__.co_name).__code__
                    target.__defaults__, target.__kwdefaults__ = None, None
                else:
                    setattr(module, attr, _stub_for(label))
                switched.append(label)
            elif inspect.isclass(obj) and obj.__module__ == name:
                for member, raw in list(vars(obj).items()):
                    if member in ("__init_subclass__", "__class_getitem__", "__new__", "__repr__", "__dict__",
                                  "__hash__", "__eq__", "__getattr__", "__getattribute__", "__del__",
                                  "__weakref__", "__module__", "__doc__", "__annotations__", "__qualname__"):
                        continue
                    stub = _stub_for(f"{name}.{attr}.{member}")
                    if isinstance(raw, staticmethod):
                        setattr(obj, member, staticmethod(stub))
                    elif isinstance(raw, classmethod):
                        setattr(obj, member, classmethod(stub))
                    elif isinstance(raw, property):
                        setattr(obj, member, property(stub))
                    elif inspect.isfunction(raw):
                        setattr(obj, member, stub)
                    else:
                        continue
                    switched.append(f"{label}.{member}")
    return switched


class _RefuseImports:
    """A meta-path finder: peers are refused; camkit modules not already loaded are refused (a fresh
    import after ``del sys.modules[...]``); everything else is left to the other finders."""

    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in PEERS or top == "camkit":
            what = f"importing {name}" if top in PEERS else f"a fresh import of {name}"
            _Runtime.refused_imports.append(what)
            error = ImportError(f"{what} is refused by the grader in this check")
            error._camkit_blocked = what
            raise error
        return None

    def find_module(self, name, path=None):  # pragma: no cover - old protocol
        return None


def _package_dirs(names: Sequence[str]) -> list[str]:
    import importlib.util
    dirs = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            dirs += [os.path.realpath(p) for p in spec.submodule_search_locations]
        elif spec is not None and spec.origin:
            dirs.append(os.path.realpath(spec.origin))
    return dirs


_VETOED = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
           "os.kill", "os.killpg", "pty.spawn", "socket.connect", "socket.bind", "sys.addaudithook",
           "gc.get_objects", "gc.get_referrers", "gc.get_referents", "os.remove", "os.rename", "os.rmdir",
           "os.truncate", "os.chmod", "os.chown", "os.symlink", "os.link", "shutil.rmtree", "os.startfile",
           "sys._current_frames", "winreg")


def _install_audit(scratch: str, blocked_dirs: list[str]) -> None:
    """An audit hook (it cannot be removed): no processes, files written outside ``scratch``, ctypes,
    gc introspection; in hidden checks no reading of camkit's or the peers' files."""
    scratch = os.path.realpath(scratch)
    blocked = tuple(d.rstrip(os.sep) for d in blocked_dirs)

    def inside(path: str, roots) -> bool:
        return any(path == r or path.startswith(r + os.sep) for r in roots)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            if isinstance(path, int) or path is None:
                return
            try:
                real = os.path.realpath(os.fsdecode(path))
            except (TypeError, ValueError):
                return
            writing = (mode and any(c in str(mode) for c in "wax+")) or (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writing and not inside(real, (scratch,)):
                raise PermissionError(f"the grader does not let your code write {real}")
            if blocked and inside(real, blocked):
                raise PermissionError(f"the grader does not let your code read {real} in this check")
        elif event.startswith(_VETOED) or event.startswith("ctypes."):
            raise PermissionError(f"the grader does not allow {event} in your code")

    sys.addaudithook(hook)


def _prepare_runner(scratch: str, hidden: bool) -> None:
    """Everything the runner does before the student's code: quiet output, one thread, the sandbox."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.closerange(3, 4096)  # pipes and sockets inherited from the grader stay out of the student's reach
    log = os.open(os.path.join(scratch, "output.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    torch.set_num_threads(1)
    import camkit.metrics, camkit.report.stats, camkit.methods.sampled  # noqa: F401,E401 (loaded before the sandbox)
    for name in ("camkit.report.claims", "camkit.methods.gradient_free", "camkit.methods.guided", "camkit.methods.cam"):
        try:
            __import__(name)
        except ImportError:
            pass
    blocked_dirs = []
    if hidden:
        _switch_off_camkit()
        sys.meta_path.insert(0, _RefuseImports())
        blocked_dirs = _package_dirs(PEERS) + [str(Path(camkit.__file__).resolve().parent)]
    _install_audit(scratch, blocked_dirs)


def _load_functions(bundles: dict) -> dict:
    """Execute each bundle's source in its own namespace; a function, or a :class:`Raised` on failure."""
    functions = {}
    for param, bundle in bundles.items():
        try:
            functions[param] = _load_bundle(bundle)
        except BaseException as error:  # noqa: BLE001
            functions[param] = Raised(type(error).__name__, str(error)[:500], _student_frame(error),
                                      getattr(error, "_camkit_blocked", ""))
    return functions


def _load_bundle(bundle: dict):
    if "error" in bundle:
        return Raised("SourceError", bundle["error"])
    namespace = {"__name__": "__student__", "__builtins__": builtins}
    for line in bundle.get("imports", []):
        exec(compile(line, "<your imports>", "exec"), namespace)
    for name, expr in bundle.get("constants", {}).items():
        namespace[name] = eval(compile(expr, "<your constants>", "eval"), namespace)
    namespace.update(bundle.get("tensors", {}))
    for piece in bundle.get("sources", []):
        filename = piece["filename"]
        padded = "\n" * (piece["lineno"] - 1) + piece["source"]
        lines = padded.splitlines(keepends=True)
        linecache.cache[filename] = (len(padded), None, lines, filename)
        _STUDENT_FILES.add(filename)
        exec(compile(padded, filename, "exec"), namespace)
    for name, target in bundle.get("aliases", {}).items():
        namespace[name] = namespace[target]
    entry = bundle["entry"]
    if entry not in namespace:
        raise NameError(f"your code defines no {entry!r}")
    return namespace[entry]


def _pack(obj, depth: int = 0):
    """Answers as plain data for ``torch.save`` / ``torch.load(weights_only=True)``."""
    if depth > 6:
        return {"o": "a value nested too deeply"}
    if isinstance(obj, Raised):
        return {"raised": obj.pack()}
    if torch.is_tensor(obj):
        try:
            return {"t": obj.detach().to("cpu").as_subclass(torch.Tensor).clone().contiguous()}
        except Exception:  # noqa: BLE001
            return {"o": "a tensor that could not be copied"}
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, float, str)):
        return {"v": obj if not isinstance(obj, str) else obj[:10000]}
    if isinstance(obj, (tuple, list)):
        return {("u" if isinstance(obj, tuple) else "l"): [_pack(v, depth + 1) for v in list(obj)[:10000]]}
    if isinstance(obj, dict):
        return {"d": {str(k): _pack(v, depth + 1) for k, v in list(obj.items())[:1000]}}
    try:
        import numpy as np
        if isinstance(obj, np.ndarray):
            return {"o": f"a NumPy array of shape {obj.shape} (return a torch tensor)"}
        if isinstance(obj, np.generic):
            return {"v": obj.item()}
    except ImportError:  # pragma: no cover
        pass
    return {"o": describe(obj)}


class _Opaque:
    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _unpack(obj):
    if "raised" in obj:
        return Raised(**obj["raised"])
    if "t" in obj:
        return obj["t"]
    if "v" in obj:
        return obj["v"]
    if "u" in obj:
        return tuple(_unpack(v) for v in obj["u"])
    if "l" in obj:
        return [_unpack(v) for v in obj["l"]]
    if "d" in obj:
        return {k: _unpack(v) for k, v in obj["d"].items()}
    return _Opaque(obj.get("o", "?"))


def _run_cases(cases: list[Case], bundles: dict, scratch: str, hidden: bool) -> None:
    """The runner's whole life: sandbox, student code, every case's driver, the answers file."""
    _prepare_runner(scratch, hidden)
    camkit_modules = {name: id(module) for name, module in sys.modules.items() if name.split(".")[0] == "camkit"}
    functions = _load_functions(bundles)
    records = []
    for case in cases:
        _Runtime.blocked_calls, _Runtime.refused_imports = [], []
        try:
            record = case.drive(functions)
        except BaseException as error:  # noqa: BLE001  (a driver that failed on a weird answer)
            record = {"out": Raised(type(error).__name__, str(error)[:500], _student_frame(error))}
        replaced = sorted(name for name, ident in camkit_modules.items()
                          if name not in sys.modules or id(sys.modules[name]) != ident)
        record = {key: _pack(v) for key, v in record.items()}
        record["__blocked__"] = list(_Runtime.blocked_calls) + list(_Runtime.refused_imports)
        record["__replaced__"] = replaced
        records.append(record)
    torch.save(records, os.path.join(scratch, "answers.pt"))


# =========================================================================== the grader

def _evaluate(request: dict) -> dict:
    """Run one check (grader side): cases, the runner, references, comparisons. Never raises."""
    name = request.get("check")
    spec = CHECKS.get(name)
    if spec is None:
        return {"passed": False, "lines": [], "report": f"✘ unknown check {name!r}"}
    kwargs = {k: v for k, v in request.get("kwargs", {}).items() if k in spec.options}
    hidden = bool(kwargs.get("hidden", False))
    try:
        values = {k: _from_json(request.get("values", {}).get(k), request.get("data")) for k in spec.values}
        cases = spec.build(values, **kwargs)
    except CheckFailed as error:
        return {"passed": False, "lines": [], "report": str(error)}
    records: list = [{} for _ in cases]
    if spec.functions:
        bundles = {k: _bundle_from_request(request.get("functions", {}).get(k), request.get("data"))
                   for k in spec.functions}
        try:
            records = _run_in_runner(cases, bundles, hidden, request)
        except CheckFailed as error:
            return {"passed": False, "lines": [], "report": f"✘ {spec.task} failed\n  {error}"}
    if request.get("measure"):
        return {"passed": None, "lines": [], "report": "", "cases": _measure(spec, cases, records)}
    lines = []
    for case, record in zip(cases, records):
        try:
            detail = _judge_one(spec, case, record)
        except CheckFailed as error:
            return {"passed": False, "lines": lines, "report": str(error)}
        except Exception as error:  # noqa: BLE001  (a reference that failed: report, never crash)
            return {"passed": False, "lines": lines,
                    "report": f"✘ {spec.task} failed\n  case:     {case.label}\n  the grader could not judge the "
                              f"answer: {type(error).__name__}: {error}"}
        lines.append(f"✔ {spec.task} · {case.label}" + (f": {detail}" if detail else ""))
    return {"passed": True, "lines": lines, "report": ""}


def _judge_one(spec: Spec, case: Case, record: dict) -> str:
    record = {k: (_unpack(v) if isinstance(v, dict) else v) for k, v in record.items()}
    replaced, blocked = record.pop("__replaced__", []), record.pop("__blocked__", [])
    if replaced:
        fail(spec.task, case.label, "camkit's modules left as the grader loaded them",
             f"{', '.join(replaced[:3])} removed from sys.modules or replaced (a fresh import of camkit)",
             "implement the task yourself with torch instead of re-importing camkit")
    for value_ in record.values():
        if isinstance(value_, Raised) and value_.blocked:
            return case.judge(record)  # the report of the call itself says what was switched off
    if blocked:  # the code called a switched-off function, caught the error and went on
        fail(spec.task, case.label, "an answer computed by your own code",
             f"{blocked[0]}, which the grader switches off (your code caught the error)",
             "do not call camkit or another attribution library in this task")
    return case.judge(record)


def _measure(spec: Spec, cases: list[Case], records: list) -> list[dict]:
    """Margin mode: judge every case and report max |Δ| / tolerance (inf for a shape, NaN, hook,
    exception or switched-off call), instead of stopping at the first failure."""
    global _RATIOS
    out = []
    for case, record in zip(cases, records):
        _RATIOS = []
        try:
            _judge_one(spec, case, record)
            failed = ""
        except CheckFailed as error:
            failed = str(error)
        except Exception as error:  # noqa: BLE001
            failed = f"{type(error).__name__}: {error}"
        ratios = [r for _, _, r in _RATIOS]
        worst = max(ratios) if ratios else (float("inf") if failed else 0.0)
        if failed and worst <= 1:
            worst = float("inf")  # failed for a reason other than a tolerance
        got = [line for line in failed.splitlines() if line.strip().startswith("got:")]
        out.append({"case": case.label, "failed": bool(failed), "ratio": worst, "report": failed,
                    "reason": got[0].strip()[4:].strip() if got else failed[:200]})
        _RATIOS = None
    return out


def _run_in_runner(cases: list[Case], bundles: dict, hidden: bool, request: dict) -> list:
    scratch = tempfile.mkdtemp(prefix="camkit-runner-")
    try:
        if hasattr(os, "fork") and sys.platform.startswith("linux") and not os.environ.get("CAMKIT_GRADER_SPAWN"):
            pid = os.fork()
            if pid == 0:  # the runner
                code = 1
                try:
                    _run_cases(cases, bundles, scratch, hidden)
                    code = 0
                finally:
                    os._exit(code)
            status = _wait(pid)
        else:  # a fresh interpreter that rebuilds the cases from the request
            with open(os.path.join(scratch, "request.json"), "w") as handle:
                json.dump(request, handle)
            proc = subprocess.Popen([sys.executable, str(HERE), "run", scratch], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                status = proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                status = "timeout"
        answers = os.path.join(scratch, "answers.pt")
        if status == "timeout":
            raise CheckFailed(f"your code ran longer than {TIMEOUT:.0f} s (an endless loop?)")
        if not os.path.exists(answers):
            tail = ""
            output = os.path.join(scratch, "output.txt")
            if os.path.exists(output):
                tail = Path(output).read_text(errors="replace")[-600:]
            raise CheckFailed("your code stopped the process that runs it (exit, crash or kill)"
                              + (f"; its last output:\n{textwrap.indent(tail, '    ')}" if tail.strip() else ""))
        try:
            records = torch.load(answers, weights_only=True)
        except Exception as error:  # noqa: BLE001
            raise CheckFailed(f"the answers could not be read ({type(error).__name__})") from None
        if not isinstance(records, list) or len(records) != len(cases):
            raise CheckFailed("the answers file does not hold one answer per case")
        return records
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _wait(pid: int):
    deadline = time.time() + TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.time() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.02)


def _runner_main(scratch: str) -> None:
    """``python checks.py run DIR``: the runner as a fresh interpreter (where fork is unavailable)."""
    with open(os.path.join(scratch, "request.json")) as handle:
        request = json.load(handle)
    spec = CHECKS[request["check"]]
    kwargs = {k: v for k, v in request.get("kwargs", {}).items() if k in spec.options}
    values = {k: _from_json(request.get("values", {}).get(k), request.get("data")) for k in spec.values}
    cases = spec.build(values, **kwargs)
    bundles = {k: _bundle_from_request(request.get("functions", {}).get(k), request.get("data")) for k in spec.functions}
    _run_cases(cases, bundles, scratch, bool(kwargs.get("hidden", False)))


def _tensors(path: Optional[str]) -> dict:
    if not path:
        return {}
    try:
        data = torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001
        return {}
    return data if isinstance(data, dict) else {}


def _from_json(obj, data_path):
    """A value sent by the notebook: JSON with tensors as {"__tensor__": key} into the data file."""
    tensors = _tensors(data_path)

    def rebuild(o):
        if isinstance(o, dict):
            if set(o) == {"__tensor__"}:
                return tensors.get(o["__tensor__"], _Opaque("a tensor that was not sent"))
            if set(o) == {"__opaque__"}:
                return _Opaque(o["__opaque__"])
            return {k: rebuild(v) for k, v in o.items()}
        if isinstance(o, list):
            return [rebuild(v) for v in o]
        return o
    return rebuild(obj)


def _bundle_from_request(bundle, data_path) -> dict:
    if not isinstance(bundle, dict):
        return {"error": "no code was sent for this function"}
    bundle = dict(bundle)
    tensors = _tensors(data_path)
    bundle["tensors"] = {name: tensors[key] for name, key in bundle.get("tensors", {}).items() if key in tensors}
    return bundle


class _Server:
    """The grader process: one request at a time, a log of every verdict (for :class:`GradedExecute`)."""

    def __init__(self):
        self.log: list[dict] = []
        self.lock = threading.Lock()

    def handle(self, request: dict) -> dict:
        if request.get("op") == "ping":
            return {"ok": True}
        with self.lock:
            try:
                result = _evaluate(request)
            except Exception as error:  # noqa: BLE001
                result = {"passed": False, "lines": [], "report": f"✘ the grader failed: {type(error).__name__}: {error}"}
            self.log.append({"check": request.get("check"), "kwargs": _literal_kwargs(request.get("kwargs", {})),
                             "passed": result["passed"], "lines": result["lines"], "report": result["report"]})
        return result

    def serve_pipe(self) -> None:
        protocol = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # anything printed by the checks goes to stderr, not into the protocol
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except json.JSONDecodeError:
                continue
            if request.get("op") == "stop":
                break
            protocol.write(json.dumps(self.handle(request)) + "\n")

    def serve_socket(self, path: str) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(8)
        control = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)

        def accept() -> None:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                with connection:
                    request = _read_message(connection)
                    if request is not None:
                        _send_message(connection, self.handle(request))

        key = json.loads(sys.stdin.readline())["key"].encode()  # sent before any kernel exists
        threading.Thread(target=accept, daemon=True).start()
        control.write(json.dumps({"ready": True}) + "\n")
        for line in sys.stdin:  # the autograder's channel; every reply is signed with the key
            try:
                command = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.lock:
                if command.get("op") == "mark":
                    body = {"mark": len(self.log)}
                elif command.get("op") == "since":
                    body = {"entries": self.log[int(command["mark"]):]}
                elif command.get("op") == "stop":
                    break
                else:
                    continue
            control.write(json.dumps(_signed(key, str(command.get("nonce")), body)) + "\n")
        listener.close()


def _signed(key: bytes, nonce: str, body: dict) -> dict:
    import hashlib
    import hmac
    text = json.dumps(body, sort_keys=True)
    return {"nonce": nonce, "body": text, "mac": hmac.new(key, (nonce + text).encode(), hashlib.sha256).hexdigest()}


def _literal_kwargs(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if isinstance(v, (bool, int, float, str, type(None), list))}


def _read_message(connection) -> Optional[dict]:
    chunks = []
    while True:
        chunk = connection.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    try:
        return json.loads(b"".join(chunks))
    except json.JSONDecodeError:
        return None


def _send_message(connection, message: dict) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


def _serve_main(argv: list[str]) -> None:
    warnings.filterwarnings("ignore")
    import camkit.metrics, camkit.report.stats, camkit.methods.sampled  # noqa: F401,E401
    try:  # what answers import often: loaded once here, inherited by every forked runner
        import scipy.stats  # noqa: F401
    except ImportError:  # pragma: no cover
        pass
    server = _Server()
    if "--socket" in argv:
        server.serve_socket(argv[argv.index("--socket") + 1])
    else:
        server.serve_pipe()


# =========================================================================== the client (notebook side)

def _is_student_function(obj) -> bool:
    return inspect.isfunction(obj) and obj.__module__ in ("__main__", "__student__")


def bundle(fn, name: str = "fn") -> dict:
    """The source of a notebook function with what it needs: the notebook functions and classes it calls,
    the modules and names it imports, constants and tensors it reads. A string is taken as source code
    whose last top-level function is the entry."""
    if isinstance(fn, tuple) and len(fn) == 2 and all(isinstance(v, str) for v in fn):
        fn, name = fn  # (source, entry)
    if isinstance(fn, str):
        tree = ast.parse(fn)
        defs = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
        assigned = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)]
        entry = name if name in defs + assigned else (defs[-1] if defs else name)
        return {"sources": [{"source": fn, "filename": f"<your code: {entry}>", "lineno": 1}], "entry": entry,
                "imports": [], "constants": {}, "tensors": {}}
    if not callable(fn):
        return {"error": f"`{name}` is {describe(fn)}, not a function: define the function and run its cell"}
    result = {"sources": [], "imports": [], "constants": {}, "tensors": {}, "entry": None}
    tensors: dict = {}
    seen: set = set()
    try:
        result["entry"] = _visit(fn, getattr(fn, "__name__", name), result, tensors, seen)
    except _BundleError as error:
        return {"error": str(error)}
    result["_tensor_values"] = tensors
    return result


class _BundleError(Exception):
    pass


def _visit(obj, name: str, out: dict, tensors: dict, seen: set) -> str:
    """Add ``obj`` (a notebook function or class) and its dependencies to ``out``; return its name."""
    if id(obj) in seen:
        return obj.__name__
    seen.add(id(obj))
    if inspect.isfunction(obj) and obj.__closure__:
        raise _BundleError(f"`{obj.__name__}` is defined inside another function: define it at the top level of a cell")
    try:
        if inspect.isfunction(obj):
            source = textwrap.dedent(inspect.getsource(obj))
            lineno, filename = obj.__code__.co_firstlineno, obj.__code__.co_filename
        else:
            source, filename, lineno = _class_source(obj)
    except (OSError, TypeError):
        raise _BundleError(f"the source of `{name}` cannot be read: define it in a notebook cell and run the cell") from None
    entry = obj.__name__
    if entry == "<lambda>":
        tree = ast.parse(source.strip().rstrip(","), mode="exec") if source.strip() else None
        lambdas = [n for n in ast.walk(tree)] if tree else []
        lambdas = [n for n in lambdas if isinstance(n, ast.Lambda)]
        if len(lambdas) != 1:
            raise _BundleError(f"`{name}` is a lambda the grader cannot isolate: write it with `def {name}(...):`")
        source = f"{name} = {ast.get_source_segment(source.strip().rstrip(','), lambdas[0])}\n"
        entry, lineno = name, lineno
    scope = obj.__globals__ if inspect.isfunction(obj) else vars(sys.modules.get(obj.__module__, sys))
    for needed in sorted(_global_names(source)):
        if needed in scope and needed != entry:
            _dependency(needed, scope[needed], entry, out, tensors, seen)
    out["sources"].append({"source": source, "filename": filename, "lineno": lineno})
    return entry


def _class_source(cls) -> tuple[str, str, int]:
    """(source, filename, first line) of a class defined in a notebook cell (inspect cannot find those
    in Python 3.11): the cell of one of its methods, parsed, and the class statement in it."""
    for member in vars(cls).values():
        function = getattr(member, "__func__", member)
        if inspect.isfunction(function) and function.__module__ == cls.__module__:
            filename = function.__code__.co_filename
            lines = linecache.getlines(filename)
            if not lines:
                break
            text = "".join(lines)
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ClassDef) and node.name == cls.__name__ and \
                        node.lineno <= function.__code__.co_firstlineno <= node.end_lineno:
                    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    source = "".join(lines[first - 1:node.end_lineno])
                    return textwrap.dedent(source), filename, first
    raise OSError(f"no source for class {cls.__name__}")


def _global_names(source: str) -> set:
    """Names a piece of source reads from the module scope (symtable: globals of every nested scope)."""
    try:
        table = symtable.symtable(source, "<source>", "exec")
    except SyntaxError:
        return set()
    names = {s.get_name() for s in table.get_symbols() if s.is_referenced() and not s.is_imported()}
    names -= {s.get_name() for s in table.get_symbols() if s.is_assigned() and not s.is_referenced()}

    def walk(t):
        for child in t.get_children():
            for s in child.get_symbols():
                if s.is_global() and s.is_referenced():
                    names.add(s.get_name())
            walk(child)
    walk(table)
    top_defs = {s.get_name() for s in table.get_symbols() if s.is_namespace()}
    return names - top_defs


def _dependency(name: str, obj, user: str, out: dict, tensors: dict, seen: set) -> None:
    import types as _types
    if isinstance(obj, _types.ModuleType):
        line = f"import {obj.__name__} as {name}" if obj.__name__ != name else f"import {name}"
        if "." in obj.__name__ and obj.__name__.split(".")[0] == name:
            line = f"import {obj.__name__}"
        if line not in out["imports"]:
            out["imports"].append(line)
        return
    if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ in ("__main__", "__student__"):
        _visit(obj, name, out, tensors, seen)
        if obj.__name__ != name:
            out.setdefault("aliases", {})[name] = obj.__name__  # name = the function its source defines
        return
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if module and qualname and (callable(obj) or inspect.isclass(obj)) and "<" not in qualname:
        try:
            import importlib
            found = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError):
            found = None
        if found is obj:
            line = f"from {module} import {qualname.split('.')[0]} as __{name}"
            rest = "".join("." + p for p in qualname.split(".")[1:])
            out["imports"] += [line, f"{name} = __{name}{rest}"]
            return
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        out["constants"][name] = repr(obj)
        return
    if isinstance(obj, (tuple, list, dict, set, frozenset)):
        try:
            if ast.literal_eval(repr(obj)) == obj:
                out["constants"][name] = repr(obj)
                return
        except (ValueError, SyntaxError):
            pass
    if torch.is_tensor(obj):
        tensors[name] = obj.detach().to("cpu").clone()
        out["tensors"][name] = name
        return
    if isinstance(obj, torch.dtype):
        out["imports"].append("import torch as __torch")
        out["constants"][name] = f"__torch.{str(obj).split('.')[-1]}"
        return
    if isinstance(obj, torch.device):
        out["imports"].append("import torch as __torch")
        out["constants"][name] = f"__torch.device({str(obj)!r})"
        return
    raise _BundleError(f"`{user}` reads the notebook variable `{name}` ({type(obj).__name__}); the checks call it "
                       f"on their own inputs, so it must get what it needs from its arguments "
                       f"(or build it inside the function)")


def _to_json(obj, tensors: dict, depth: int = 0):
    if torch.is_tensor(obj):
        key = f"v{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").clone()
        return {"__tensor__": key}
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, float, str)):
        return obj
    if depth < 6 and isinstance(obj, (list, tuple)):
        return [_to_json(v, tensors, depth + 1) for v in obj]
    if depth < 6 and isinstance(obj, dict):
        return {str(k): _to_json(v, tensors, depth + 1) for k, v in obj.items()}
    try:
        import numpy as np
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return _to_json(torch.as_tensor(obj), tensors, depth)
    except ImportError:  # pragma: no cover
        pass
    return {"__opaque__": describe(obj)}


class _Connection:
    """The notebook's line to a grader: the autograder's socket, or a grader of its own (a pipe)."""

    process: Optional[subprocess.Popen] = None

    @classmethod
    def request(cls, message: dict) -> dict:
        path = os.environ.get(SOCKET_ENV)
        if path:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.connect(path)
                _send_message(connection, message)
                reply = _read_message(connection)
            if reply is None:
                raise CheckFailed("✘ the grader did not answer")
            return reply
        for attempt in range(2):
            process = cls._ensure()
            try:
                process.stdin.write(json.dumps(message) + "\n")
                process.stdin.flush()
                line = process.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            if line:
                return json.loads(line)
            cls.process = None  # it died: start a fresh one once
        raise CheckFailed("✘ the grader process stopped; rerun the cell")

    @classmethod
    def _ensure(cls) -> subprocess.Popen:
        if cls.process is None or cls.process.poll() is not None:
            log = open(os.path.join(tempfile.gettempdir(), f"camkit-grader-{os.getpid()}.log"), "a")
            cls.process = subprocess.Popen([sys.executable, "-u", str(HERE), "serve"], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=log, text=True, cwd=str(HERE.parent))
        return cls.process

    @classmethod
    def start(cls) -> None:
        """Start the grader in the background (its imports take a few seconds)."""
        if not os.environ.get(SOCKET_ENV):
            cls._ensure()


def submit(check: str, *args, measure: bool = False, **kwargs) -> dict:
    """Send one check to the grader: positional ``args`` are the check's functions (callables or source
    strings) and values in order; returns {"passed", "lines", "report"}."""
    spec = CHECKS[check]
    params = list(spec.functions) + list(spec.values)
    args = list(args) + [kwargs.pop(name) for name in params[len(args):] if name in kwargs]
    if len(args) != len(params):
        raise TypeError(f"{check} takes {', '.join(params)} ({len(params)} arguments), got {len(args)}")
    unknown = set(kwargs) - set(spec.options)
    if unknown:
        raise TypeError(f"{check} got unexpected keyword arguments {sorted(unknown)}")
    tensors: dict = {}
    functions, values = {}, {}
    for param, arg in zip(params, args):
        if param in spec.functions:
            packed = bundle(arg, param)
            for key, tensor in packed.pop("_tensor_values", {}).items():
                tensors[f"{param}.{key}"] = tensor
            packed["tensors"] = {k: f"{param}.{v}" for k, v in packed.get("tensors", {}).items()}
            functions[param] = packed
        else:
            values[param] = _to_json(arg, tensors)
    data = None
    if tensors:
        handle, data = tempfile.mkstemp(prefix="camkit-check-", suffix=".pt")
        os.close(handle)
        torch.save(tensors, data)
    try:
        return _Connection.request({"op": "check", "check": check, "functions": functions, "values": values,
                                    "kwargs": _to_json(kwargs, {}), "data": data, "measure": measure})
    finally:
        if data:
            os.unlink(data)


def _client(check: str):
    def run(*args, **kwargs) -> None:
        result = submit(check, *args, **kwargs)
        for line in result.get("lines", []):
            print(line)
        if not result.get("passed"):
            raise CheckFailed(result.get("report") or "✘ the check failed")
    run.__name__ = check
    run.__doc__ = f"{CHECKS[check].task}: the check runs in the grader process (see the module docstring)."
    return run


for _name in CHECKS:
    globals()[_name] = _client(_name)

if "ipykernel" in sys.modules and __name__ != "__main__":  # a notebook imported us: warm the grader up
    try:
        _Connection.start()
    except OSError:  # pragma: no cover
        pass


# =========================================================================== grading a whole notebook

def _expected_calls(source: str) -> list[tuple[str, dict]]:
    """The ``checks.check_*`` calls of a (trusted) test cell, with their literal keyword arguments."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    calls = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CHECKS
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "checks"):
            literal = {"hidden": False}
            for keyword in node.keywords:
                try:
                    literal[keyword.arg] = ast.literal_eval(keyword.value)
                except ValueError:
                    pass
            calls.append((node.func.attr, literal))
    calls.sort(key=lambda c: 0)
    return calls


def _cell_verdict(source: str, entries: list[dict]) -> tuple[bool, list[str], str]:
    """A graded cell passes when every check its source calls reached the grader and every check that
    reached the grader while it ran passed."""
    lines = [line for entry in entries for line in entry["lines"]]
    for entry in entries:
        if not entry["passed"]:
            return False, lines, entry["report"]
    for check, literal in _expected_calls(source):
        if not any(e["check"] == check and all(e["kwargs"].get(k, False if k == "hidden" else None) == v
                                               for k, v in literal.items()) for e in entries):
            args = ", ".join(f"{k}={v!r}" for k, v in literal.items())
            return False, lines, (f"✘ checks.{check}({args}) did not reach the grader while this cell ran "
                                  "(the cell stopped early, or the notebook changed the checks)")
    return True, lines, ""


def _is_graded_test(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and meta.get("grade") and not meta.get("solution")


class _GraderProcess:
    """A grader started by the autograder (not by the kernel), with a private control channel."""

    def __init__(self):
        import secrets
        self.dir = tempfile.mkdtemp(prefix="camkit-grade-")
        os.chmod(self.dir, 0o700)
        self.path = os.path.join(self.dir, "grader.sock")
        self.key = secrets.token_hex(32)
        log = open(os.path.join(self.dir, "grader.log"), "w")
        self.process = subprocess.Popen([sys.executable, "-u", str(HERE), "serve", "--socket", self.path],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                        cwd=str(HERE.parent))
        self.process.stdin.write(json.dumps({"key": self.key}) + "\n")
        self.process.stdin.flush()
        if not self._line(TIMEOUT):
            raise RuntimeError(f"the grader did not start: {Path(self.dir, 'grader.log').read_text()[-2000:]}")

    def _line(self, timeout: float) -> str:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        return self.process.stdout.readline() if ready else ""

    def ask(self, command: dict) -> dict:
        """A command on the private channel; the reply must carry this command's nonce and the key's MAC
        (a kernel that writes into the grader's pipe through /proc cannot forge it)."""
        import hashlib
        import hmac
        import secrets
        nonce = secrets.token_hex(16)
        self.process.stdin.write(json.dumps({**command, "nonce": nonce}) + "\n")
        self.process.stdin.flush()
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self._line(max(0.1, deadline - time.time()))
            if not line:
                break
            try:
                reply = json.loads(line)
            except json.JSONDecodeError:
                continue
            expected = hmac.new(self.key.encode(), (nonce + str(reply.get("body"))).encode(), hashlib.sha256).hexdigest()
            if reply.get("nonce") == nonce and hmac.compare_digest(str(reply.get("mac")), expected):
                return json.loads(reply["body"])
        raise RuntimeError("the grader did not answer (it stopped, or its channel was tampered with)")

    def close(self) -> None:
        try:
            self.process.stdin.write(json.dumps({"op": "stop"}) + "\n")
            self.process.stdin.flush()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class _GradedMixin:
    """Execute a notebook with a grader outside the kernel; every graded cell's outputs come from it."""

    def preprocess(self, nb, resources=None, *args, **kwargs):
        self._grader = _GraderProcess()
        previous = os.environ.get(SOCKET_ENV)
        os.environ[SOCKET_ENV] = self._grader.path
        try:
            return super().preprocess(nb, resources, *args, **kwargs)
        finally:
            if previous is None:
                os.environ.pop(SOCKET_ENV, None)
            else:
                os.environ[SOCKET_ENV] = previous
            self._grader.close()

    def preprocess_cell(self, cell, resources, index):
        if not _is_graded_test(cell):
            return super().preprocess_cell(cell, resources, index)
        from nbformat.v4 import new_output
        try:
            mark = self._grader.ask({"op": "mark"})["mark"]
            cell, resources = super().preprocess_cell(cell, resources, index)
            entries = self._grader.ask({"op": "since", "mark": mark})["entries"]
            passed, lines, report = _cell_verdict(cell.source, entries)
        except RuntimeError as error:
            passed, lines, report = False, [], f"✘ the grader failed: {error}"
        outputs = [new_output("stream", name="stdout", text="\n".join(lines) + "\n")] if lines else []
        if not passed:
            outputs.append(new_output("error", ename="CheckFailed", evalue=report,
                                      traceback=["\x1b[31mCheckFailed\x1b[0m", *report.splitlines()]))
        cell.outputs = outputs
        return cell, resources


def __getattr__(name: str):
    """``checks.GradedExecute`` (nbgrader's Execute, graded outside the kernel) and
    ``checks.GradedExecutePreprocessor`` (nbconvert's), built on first use."""
    if name == "GradedExecute":
        from nbgrader.preprocessors import Execute
        cls = type("GradedExecute", (_GradedMixin, Execute), {"__module__": __name__})
    elif name == "GradedExecutePreprocessor":
        from nbconvert.preprocessors import ExecutePreprocessor
        cls = type("GradedExecutePreprocessor", (_GradedMixin, ExecutePreprocessor), {"__module__": __name__})
    else:
        raise AttributeError(f"module 'checks' has no attribute {name!r}")
    globals()[name] = cls
    return cls


def _restore_trusted_cells(notebook, trusted) -> None:
    """Put the trusted source back into every locked cell (as nbgrader's autograde does from its gradebook)."""
    originals = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in trusted.cells
                 if c.metadata.get("nbgrader", {}).get("locked")}
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in originals:
            cell.source = originals[grade_id].source
            cell.metadata["nbgrader"] = dict(originals[grade_id].metadata["nbgrader"])
    ids = {c.metadata.get("nbgrader", {}).get("grade_id") for c in notebook.cells}
    for grade_id, cell in originals.items():
        if grade_id not in ids and _is_graded_test(cell):  # a deleted test cell still counts (0 points)
            notebook.cells.append(cell)


def grade_notebook(path: str | Path, trusted: str | Path | None = None, timeout: int = 600,
                   output: str | Path | None = None) -> dict[str, dict]:
    """Grade a submitted notebook outside any kernel's reach: restore the locked cells from ``trusted``
    (the grading copy), execute it next to this checks.py, and score each graded cell from the grader's
    log. Returns {grade_id: {"points", "max", "passed", "report"}} (answers graded by hand: points None)."""
    import nbformat
    notebook = nbformat.read(str(path), as_version=4)
    if trusted is not None:
        _restore_trusted_cells(notebook, nbformat.read(str(trusted), as_version=4))
    with tempfile.TemporaryDirectory(prefix="camkit-grading-") as folder:
        shutil.copy(HERE, Path(folder) / "checks.py")
        executor = __getattr__("GradedExecutePreprocessor")(timeout=timeout, allow_errors=True, kernel_name="python3")
        executor.preprocess(notebook, {"metadata": {"path": folder}})
    if output is not None:
        nbformat.write(notebook, str(output))
    scores = {}
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        points = float(meta.get("points", 0))
        if _is_graded_test(cell):
            errors = [o for o in cell.outputs if o.output_type == "error"]
            scores[meta["grade_id"]] = {"points": 0.0 if errors else points, "max": points, "passed": not errors,
                                        "report": errors[0].evalue if errors else ""}
        else:
            scores[meta["grade_id"]] = {"points": None, "max": points, "passed": None, "report": "graded by hand"}
    return scores


def _grade_main(argv: list[str]) -> None:
    import argparse
    parser = argparse.ArgumentParser(prog="python checks.py grade", description=grade_notebook.__doc__)
    parser.add_argument("notebook")
    parser.add_argument("--trusted", help="the grading copy (grading/NN_slug.ipynb): its locked cells are restored")
    parser.add_argument("--output", help="write the graded notebook here")
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args(argv)
    scores = grade_notebook(args.notebook, args.trusted, args.timeout, args.output)
    total = sum(s["points"] for s in scores.values() if s["points"] is not None)
    auto = sum(s["max"] for s in scores.values() if s["points"] is not None)
    for grade_id, s in scores.items():
        shown = "by hand" if s["points"] is None else f"{s['points']:g} / {s['max']:g}"
        print(f"{grade_id:12s} {shown:>10s}  {s['report'].splitlines()[0] if s['report'] else '✔'}")
    print(f"autograded total: {total:g} / {auto:g}")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "serve":
        _serve_main(sys.argv[2:])
    elif command == "run":
        _runner_main(sys.argv[2])
    elif command == "grade":
        _grade_main(sys.argv[2:])
    else:
        print(__doc__)
        print("usage: python checks.py grade NOTEBOOK [--trusted GRADING_COPY] | serve | run DIR")
