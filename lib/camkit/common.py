"""What methods and metrics share: setting checks, seeds, the model's device, batched passes.

camkit uses one vocabulary everywhere (README, "Vocabulary"):

* ``internal_batch_size``: the most rows sent through the model in one pass (None: all at once);
* ``steps``: points along a deterministic path (Integrated Grad-CAM, insertion/deletion, the
  saturation curve); ``samples``: random draws (Expected Grad-CAM, Smooth Grad-CAM++, infidelity);
* ``seed`` / ``generator``: one call's randomness; every input row draws from its own stream, so a
  seeded result does not depend on ``internal_batch_size``;
* ``baseline`` / ``blur_sigma``: see :mod:`camkit.transforms`.

Old spellings (``batch_size``, ``n_steps``, ``n_perturb``, ``n_alphas``, ``"zero"``) still work for
one release and warn with a :class:`DeprecationWarning`.
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn

#: Default ``internal_batch_size`` on a CPU (measured: 224-px chunks of 16 run faster per image than
#: chunks of 64 on a 2-core CPU; see benchmarks/) and on an accelerator.
INTERNAL_BATCH_SIZE_CPU = 16
INTERNAL_BATCH_SIZE_ACCELERATOR = 64


# --------------------------------------------------------------------------- setting checks

def check_positive_int(value, name: str, allow_none: bool = False) -> Optional[int]:
    """Validate an integer setting such as ``steps`` or ``internal_batch_size``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")
    return value


def check_sigma(value, name: str = "sigma") -> float:
    """A non-negative, finite standard deviation."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_choice(value, allowed: tuple[str, ...], name: str, tensor_ok: bool) -> Union[str, Tensor]:
    """A string among ``allowed`` (or, where ``tensor_ok``, a float tensor of images)."""
    alternatives = ", ".join(map(repr, allowed)) + (", or a tensor of images" if tensor_ok else "")
    if isinstance(value, str):
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; allowed: {alternatives}")
        return value
    if tensor_ok and torch.is_tensor(value):
        if value.ndim not in (3, 4) or not value.is_floating_point():
            raise ValueError(f"{name} must be a float tensor (C, H, W) or (R, C, H, W), got "
                             f"{value.dtype} of shape {tuple(value.shape)}")
        if value.ndim == 4 and value.shape[0] == 0:
            raise ValueError(f"{name} is an empty set of images (R = 0); give at least one")
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or Inf values")
        return value
    raise TypeError(f"{name} must be one of {alternatives}; got {type(value).__name__}")


def check_images_like(images: Tensor, x: Tensor, name: str, per_image_ok: bool) -> Tensor:
    """``images`` as (R, C, H, W) on x's device and dtype, with x's (C, H, W)."""
    images = images.unsqueeze(0) if images.ndim == 3 else images
    if tuple(images.shape[1:]) != tuple(x.shape[1:]):
        raise ValueError(f"{name} has images of shape {tuple(images.shape[1:])}, the inputs "
                         f"{tuple(x.shape[1:])}; they must match")
    if per_image_ok and images.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"{name} must hold 1 or N = {x.shape[0]} images, got {images.shape[0]}")
    return images.to(device=x.device, dtype=x.dtype)


# --------------------------------------------------------------------------- old spellings

def renamed_keywords(**renames: str):
    """Decorator: accept the old keyword ``old`` for ``new`` (``old="new"``) with a DeprecationWarning."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__qualname__}() got both {old}= (old spelling) and {new}=")
                    warnings.warn(f"{fn.__qualname__}({old}=...) is deprecated; use {new}=", DeprecationWarning,
                                  stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)
        return inner
    return wrap


def renamed_value(value, renames: dict, name: str):
    """Map an old spelling of a setting's value to the new one (``{"zero": "black"}``), with a warning."""
    if isinstance(value, str) and value in renames:
        warnings.warn(f"{name}={value!r} is deprecated; use {name}={renames[value]!r}", DeprecationWarning,
                      stacklevel=3)
        return renames[value]
    return value


# --------------------------------------------------------------------------- devices and batches

def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def default_internal_batch_size(device: Union[torch.device, str]) -> int:
    """The default ``internal_batch_size`` for a device: 16 on a CPU, 64 on an accelerator."""
    return INTERNAL_BATCH_SIZE_CPU if torch.device(device).type == "cpu" else INTERNAL_BATCH_SIZE_ACCELERATOR


def row_chunks(n: int, size: Optional[int]) -> Iterator[slice]:
    """Slices covering range(n) in chunks of at most ``size`` rows (all at once for None)."""
    size = n if size is None else size
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def batched(fn: Callable[[Tensor], Tensor], n: int, device: torch.device, internal_batch_size: Optional[int],
            *, progress: bool = False, desc: str = "") -> Tensor:
    """``cat([fn(rows) for chunks rows of arange(n)])`` without autograd: each chunk is one model pass.

    ``rows`` is a long tensor of row indices on ``device``; a tqdm bar shows when ``progress`` and
    there is more than one chunk.
    """
    chunks = list(row_chunks(n, internal_batch_size))
    if progress and len(chunks) > 1:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=desc, leave=False)
    with torch.no_grad():
        return torch.cat([fn(torch.arange(rows.start, rows.stop, device=device)) for rows in chunks])


# --------------------------------------------------------------------------- randomness

def check_randomness(seed, generator) -> None:
    """Validate ``seed=`` / ``generator=`` (at most one of them)."""
    if seed is not None and generator is not None:
        raise ValueError("give seed= or generator=, not both")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def make_generator(seed: Optional[int], generator: Optional[torch.Generator] = None) -> torch.Generator:
    """The generator of one call: ``generator`` itself, a fresh one seeded with ``seed``, or a fresh
    one seeded from torch's global RNG (so ``torch.manual_seed`` also makes the call reproducible)."""
    if generator is not None:
        return generator
    if seed is None:
        seed = int(torch.randint(0, 2 ** 62, ()).item())
    return torch.Generator().manual_seed(seed)


def draw_seeds(generator: torch.Generator, n: int) -> list[int]:
    """n row seeds from the call's generator (one small host transfer, no numpy)."""
    return torch.randint(0, 2 ** 62, (n,), generator=generator, device=generator.device).tolist()


def per_row(seeds: Sequence[int], device: torch.device, draw: Callable[[torch.Generator], Tensor]) -> Tensor:
    """Stack ``draw(g)`` over rows, g a generator on ``device`` seeded with the row's seed.

    One small random draw per row (not a forward pass): it makes a row's noise independent of
    how rows are chunked into batches.
    """
    generator, out = torch.Generator(device=device), []
    for seed in seeds:
        out.append(draw(generator.manual_seed(seed)))
    return torch.stack(out)
