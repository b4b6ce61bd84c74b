"""Resources: hooks never outlive a call (also after errors and Ctrl-C), CAM objects can be created in
a loop, repeated calls do not grow memory, no graph survives a call, and maps are reproducible."""
import gc
import inspect
import weakref

import psutil
import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v2

import camkit
from nets import FAST, GapLinearNet, ReluHeadNet, hook_count, images

METHOD_NAMES = sorted(camkit.METHODS)
STOCHASTIC = [name for name in METHOD_NAMES if "seed" in inspect.signature(camkit.METHODS[name]).parameters]
#: The issue's bound on RSS growth between the late and the early calls.
RSS_GROWTH_MB = 50


@pytest.fixture(scope="module", autouse=True)
def _single_thread(one_thread):
    """Tiny models: intra-op threads only add spinning on a shared CPU (fixture in conftest.py)."""


def method(name, model, layer="features", **kwargs):
    return camkit.METHODS[name](model, layer, **{**FAST.get(name, {}), **kwargs})


def small_mobilenet() -> nn.Module:
    """torchvision MobileNetV2 at width 0.5: 0.70 M parameters (the issue's ≤ 1 M-parameter model),
    batch-norm statistics set from random images so activations have a realistic scale."""
    torch.manual_seed(0)
    model = mobilenet_v2(width_mult=0.5, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) <= 1_000_000
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        model.train()(images(4, 64, seed=99))
    return model.eval()


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2 ** 20


class Interrupt:
    """A forward hook on ``module`` that raises ``error`` on its ``at``-th call (like Ctrl-C mid-run)."""

    def __init__(self, module: nn.Module, at: int, error: BaseException):
        self.calls, self.at, self.error = 0, at, error
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        self.calls += 1
        if self.calls == self.at:
            raise self.error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


# --------------------------------------------------------------------------- hooks

@pytest.mark.parametrize("name", METHOD_NAMES)
def test_hooks_exist_during_a_call_and_are_gone_after_it(name):
    model = GapLinearNet().eval()
    during = []
    handle = model.fc.register_forward_hook(lambda *args: during.append(hook_count(model) - 1))
    try:
        method(name, model)(images(2), 1)
    finally:
        handle.remove()
    assert during and max(during) >= 1, "camkit's hooks should be visible while the model runs"
    assert hook_count(model) == 0


@pytest.mark.parametrize("name", METHOD_NAMES)
@pytest.mark.parametrize("error", [RuntimeError("boom inside the model"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
def test_no_hook_left_after_an_error_inside_the_model(name, error):
    model = GapLinearNet().eval()
    with Interrupt(model.fc, at=1, error=error):
        with pytest.raises(type(error)):
            method(name, model)(images(2), 1)
    assert hook_count(model) == 0
    assert torch.is_grad_enabled(), "the caller's grad mode must be restored"
    torch.testing.assert_close(method(name, model)(images(2), 1), method(name, GapLinearNet().eval())(images(2), 1))


@pytest.mark.parametrize("variant", ["paper", "authors-code"])
def test_keyboard_interrupt_in_a_long_integrated_gradcam_run(variant):
    """Ctrl-C on the 20th of 100 path batches: the hooks go, grad mode comes back, the object still works."""
    model = GapLinearNet().eval()
    cam = camkit.METHODS["integrated-gradcam"](model, "features", steps=200, variant=variant, internal_batch_size=4)
    with torch.no_grad():  # the caller's mode, which must survive
        with Interrupt(model.fc, at=20, error=KeyboardInterrupt()) as interrupt:
            with pytest.raises(KeyboardInterrupt):
                cam(images(2))
        assert interrupt.calls == 20 and not torch.is_grad_enabled()
    assert hook_count(model) == 0
    assert torch.isfinite(cam(images(2))).all() and hook_count(model) == 0


def test_grad_mode_of_the_caller_is_kept_in_both_directions():
    model = GapLinearNet().eval()
    with torch.no_grad():
        camkit.GradCAM(model, "features")(images(2))
        assert not torch.is_grad_enabled()
    with torch.inference_mode(False), torch.enable_grad():
        camkit.GradCAM(model, "features")(images(2))
        assert torch.is_grad_enabled()


def test_1000_cam_objects_on_one_model_leave_no_hooks_and_no_objects():
    """pytorch-grad-cam's complaint: re-creating CAM objects in a loop piles up hooks and memory."""
    model, x = small_mobilenet(), images(1, 32)
    refs, rss = [], {}
    for i in range(1, 1001):
        cam = camkit.GradCAM(model, "features")
        if i % 10 == 0:
            cam(x)  # used objects too (calls are the expensive part)
        refs.append(weakref.ref(cam))
        del cam
        if i in (100, 1000):
            rss[i] = rss_mb()
    assert hook_count(model) == 0
    assert all(ref() is None for ref in refs), "the model (or camkit) keeps dropped CAM objects alive"
    assert rss[1000] - rss[100] <= 10, rss


@pytest.mark.parametrize("name, calls, first, size, kwargs", [
    ("gradcam", 1000, 100, 96, {}),
    ("integrated-gradcam", 200, 20, 64, dict(steps=8)),
])
def test_rss_does_not_grow_over_repeated_calls(name, calls, first, size, kwargs):
    """Sizes chosen so that keeping A and g (or a graph) of every call would exceed the bound:
    Grad-CAM 2 × 90 kB per call at 96 px, IG-CAM 16 path rows × 2 × 20 kB per call at 64 px."""
    model, x = small_mobilenet(), images(2, size)
    cam = camkit.METHODS[name](model, "features", **kwargs)
    rss = {}
    for i in range(1, calls + 1):
        maps = cam(x)
        if i in (first, calls):
            rss[i] = rss_mb()
    growth = rss[calls] - rss[first]
    print(f"{name}: RSS after call {first} {rss[first]:.1f} MB, after call {calls} {rss[calls]:.1f} MB, "
          f"growth {growth:+.1f} MB")
    assert growth <= RSS_GROWTH_MB
    assert not maps.requires_grad and maps.grad_fn is None and hook_count(model) == 0


@pytest.mark.gpu
@pytest.mark.parametrize("name, calls, first, kwargs", [("gradcam", 1000, 100, {}),
                                                        ("integrated-gradcam", 200, 20, dict(steps=8))])
def test_cuda_allocated_memory_does_not_grow(cuda_device, name, calls, first, kwargs):
    model, x = small_mobilenet().to(cuda_device), images(2, 64).to(cuda_device)
    cam = camkit.METHODS[name](model, "features", **kwargs)
    allocated = {}
    for i in range(1, calls + 1):
        maps = cam(x)
        if i in (first, calls):
            del maps
            torch.cuda.synchronize()
            allocated[i] = torch.cuda.memory_allocated(cuda_device)
    assert allocated[calls] - allocated[first] <= 2 ** 20, allocated


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_no_graph_survives_a_call(name):
    model = GapLinearNet().eval()
    x = images(2).requires_grad_(True)  # even a caller's x that requires grad
    maps = method(name, model)(x, [0, 3])
    assert not maps.requires_grad and maps.grad_fn is None and maps.is_leaf
    assert all(p.grad is None for p in model.parameters()), "gradients were accumulated into the model"
    assert x.grad is None
    probe = weakref.ref(maps)
    del maps
    assert probe() is None


# --------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("name", METHOD_NAMES)
def test_same_inputs_give_bit_identical_maps(name):
    model, x = small_mobilenet(), images(2, 64)
    first = method(name, model)(x, normalize=False)
    again = method(name, model)(x, normalize=False)
    fresh = method(name, small_mobilenet())(x, normalize=False)
    assert first.abs().amax() > 0
    assert torch.equal(first, again) and torch.equal(first, fresh)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_methods_take_a_seed_or_a_generator(name):
    model, x = ReluHeadNet().eval(), images(2)  # its gradients vary with the input (GAP-linear ones do not)
    cls = camkit.METHODS[name]
    # relu=False: on this net SS-CAM's gains are all negative, so its ReLU'd maps are zero for every seed
    seeded = [cls(model, "features", samples=4, seed=seed, relu=False)(x, normalize=False) for seed in (0, 0, 1)]
    assert torch.equal(seeded[0], seeded[1]) and not torch.equal(seeded[0], seeded[2])
    cam = cls(model, "features", samples=4, relu=False)  # no seed: drawn from torch's global RNG
    torch.manual_seed(5)
    a = cam(x, normalize=False)
    torch.manual_seed(5)
    assert torch.equal(a, cam(x, normalize=False))
    with_generator = cls(model, "features", samples=4, generator=torch.Generator().manual_seed(0),
                         relu=False)(x, normalize=False)
    assert torch.equal(with_generator, seeded[0])


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_maps_do_not_depend_on_internal_batch_size(name):
    model, x = GapLinearNet().eval(), images(3)
    whole = method(name, model, internal_batch_size=None)(x, [1, 2, 3])
    torch.testing.assert_close(method(name, model, internal_batch_size=1)(x, [1, 2, 3]), whole, rtol=1e-4, atol=1e-5)
