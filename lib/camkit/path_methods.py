r"""Multi-pass CAMs: Integrated Grad-CAM, Expected Grad-CAM, Smooth Grad-CAM++ and Score-CAM.

Notation (the same as the notebooks): A^k(z) is channel k of the target layer for input z,
g^k(z) = ∂y^c(z)/∂A^k(z), :math:`\bar\alpha_k(z) = \frac{1}{Z}\sum_{ij} g^k_{ij}(z)` the Grad-CAM
weight, x′ a baseline and γ(t) = x′ + t (x − x′) the straight path. Every quantity lives in the
model's input space, [0, 1] pixels for camkit's models (black = 0, noise σ in pixel-value units).

Each method expands an image into S rows (path steps, noisy copies or masked inputs) and sends
them through the model in batches of at most ``internal_batch_size`` rows, accumulating per-image
sums on the model's device: peak memory depends on ``internal_batch_size``, not on S. Random
draws come from a per-row stream, so a seeded map does not depend on ``internal_batch_size``.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, Optional, Union

import torch
from torch import Tensor, nn

from .core import (BaseCAM, GradientCAM, Targets, TargetSpec, capture_activation, check_images,
                   check_positive_int, normalize_maps, register, row_chunks, upsample_maps)
from .layers import LayerSpec
from .transforms import gaussian_kernel, separable_conv

BaselineSpec = Union[str, Tensor]
TLaw = Union[str, float, Callable[[int, torch.Generator], Tensor]]

#: Baselines of Integrated Grad-CAM and Score-CAM (or a tensor).
BASELINES = ("black", "blur", "mean")
#: Built-in reference samplers of Expected Grad-CAM (or a tensor of reference images).
SAMPLERS = ("black", "blur", "uniform-noise", "shuffled-pixels")
#: Laws of the path position t of Expected Grad-CAM (or a constant in [0, 1], or a callable).
T_LAWS = ("uniform", "stratified")
#: Readings of Integrated Grad-CAM.
VARIANTS = ("paper", "authors-code")
#: Default rows per forward pass of these methods (None sends all S rows of the batch at once).
INTERNAL_BATCH_SIZE = 64
#: Default spatial standard deviation (pixels) of the "blur" baseline.
BLUR_SIGMA = 10.0


# --------------------------------------------------------------------------- settings

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


def make_generator(seed: Optional[int], generator: Optional[torch.Generator]) -> torch.Generator:
    """The generator of one call: ``generator`` itself, a fresh one seeded with ``seed``, or a fresh
    one seeded from torch's global RNG (so ``torch.manual_seed`` also makes the call reproducible)."""
    if generator is not None:
        return generator
    if seed is None:
        seed = int(torch.randint(0, 2 ** 62, ()).item())
    return torch.Generator().manual_seed(seed)


def check_randomness(seed, generator) -> None:
    """Validate ``seed=`` / ``generator=`` (at most one of them)."""
    if seed is not None and generator is not None:
        raise ValueError("give seed= or generator=, not both")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


# --------------------------------------------------------------------------- input-space helpers

def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, σ in pixels, radius ⌈3σ⌉, replicate padding (σ = 0: x)."""
    if sigma == 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    return separable_conv(x, gaussian_kernel(2 * radius + 1, sigma, x.device), "replicate")


def make_baseline(spec: BaselineSpec, x: Tensor, blur_sigma: float) -> Tensor:
    """The (N, C, H, W) baseline x′ of each image: black (0), blurred x, x's mean colour, or a tensor."""
    if torch.is_tensor(spec):
        return check_images_like(spec, x, "baseline", per_image_ok=True).expand_as(x)
    if spec == "black":
        return torch.zeros_like(x)
    if spec == "blur":
        return gaussian_blur(x, blur_sigma)
    return x.mean(dim=(-2, -1), keepdim=True).expand_as(x)


def along_path(baseline: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """γ(t) = x′ + t (x − x′) row by row (torch.lerp: exactly x at t = 1 and x′ at t = 0)."""
    return torch.lerp(baseline, x, t.to(x.dtype).reshape(-1, 1, 1, 1))


def per_row(seeds: list[int], device: torch.device, draw: Callable[[torch.Generator], Tensor]) -> Tensor:
    """Stack ``draw(g)`` over rows, g a generator on ``device`` seeded with the row's seed.

    One small random draw per row (not a forward pass): it makes a row's noise independent of
    how rows are chunked into batches.
    """
    generator, out = torch.Generator(device=device), []
    for seed in seeds:
        out.append(draw(generator.manual_seed(seed)))
    return torch.stack(out)


def draw_seeds(generator: torch.Generator, n: int) -> list[int]:
    """n row seeds from the call's generator (one small host transfer, no numpy)."""
    return torch.randint(0, 2 ** 62, (n,), generator=generator, device=generator.device).tolist()


def expanded_rows(n: int, times: int, size: Optional[int],
                  device: torch.device) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """Chunks of the n·times rows of a batch where each image is repeated ``times`` times.

    Yields (rows, image, s): the slice of expanded rows, each row's image index and its
    position s in 0..times−1.
    """
    for rows in row_chunks(n * times, size):
        r = torch.arange(rows.start, rows.stop, device=device)
        yield rows, torch.div(r, times, rounding_mode="floor"), r % times


def layer_outputs(cam: BaseCAM, x: Tensor, targets: Optional[Targets] = None,
                  transform: Optional[Callable[[Tensor], Tensor]] = None) -> tuple[Tensor, Optional[Tensor]]:
    """Activations A (N, C, h, w) of the target layer and, with ``targets``, the (N, K) scores of
    ``transform(logits)``; no gradients, in chunks of ``cam.internal_batch_size`` rows."""
    layer = cam.target_layer(x)
    activations, scores = [], []
    for rows in row_chunks(x.shape[0], cam.internal_batch_size):
        with torch.no_grad(), capture_activation(layer, cam.layer_name, detach_below=False,
                                                       reshape=cam.reshape) as capture:
            logits = cam.model(x[rows])
            activations.append(capture.get().float())
            if targets is not None:
                scores.append(targets.scores(transform(logits) if transform else logits, rows))
    return torch.cat(activations), (torch.cat(scores) if targets is not None else None)


def accumulate(total: Optional[Tensor], image: Tensor, terms: Tensor, n: int) -> Tensor:
    """Add per-row ``terms`` into per-image sums (n, ...), allocated on first use."""
    if total is None:
        total = terms.new_zeros((n, *terms.shape[1:]))
    return total.index_add_(0, image, terms)


def weighted_sum(weights: Tensor, activation: Tensor) -> Tensor:
    """Σ_k w_k A^k: (B, K, C) weights and (B, C, h, w) maps → (B, K, h, w)."""
    return torch.einsum("bkc,bchw->bkhw", weights, activation)


# --------------------------------------------------------------------------- Integrated Grad-CAM

@register("integrated-gradcam")
class IntegratedGradCAM(GradientCAM):
    r"""Integrated Grad-CAM (Sattarzadeh et al., ICASSP 2021, https://arxiv.org/abs/2102.07805).

    Grad-CAM's weighted sum integrated along the path, with the change of the feature maps
    since the baseline (right Riemann points t_s = s/m):

    .. math:: M = \mathrm{ReLU}\Big(\frac{1}{m}\sum_{s=1}^{m}\sum_k \bar\alpha_k(\gamma(t_s))
              \big(A^k(\gamma(t_s)) - A^k(x')\big)\Big)

    ``variant="authors-code"`` reproduces the authors' notebook: left points t_s = (s − 1)/m and
    a ReLU'd Grad-CAM map per step, :math:`M = \frac1m\sum_s \mathrm{ReLU}(\sum_k \bar\alpha_k(\gamma(t_s))
    A^k(\gamma(t_s)))`. :meth:`layer_attribution` gives the element-wise Riemann–Stieltjes
    attribution whose total approaches y^c(x) − y^c(x′).

    >>> cam = IntegratedGradCAM(model, layer="layer4", steps=50, baseline="black")
    >>> maps = cam(x)                          # (N, H, W) in [0, 1]
    >>> a, delta = cam.layer_attribution(x, return_delta=True)

    Args:
        steps: m, the number of path points (default 50, as in the authors' code).
        baseline: x′: "black" (0, default), "blur" (Gaussian, σ = ``blur_sigma`` pixels),
            "mean" (each image's mean colour), or a tensor (C, H, W), (1, C, H, W) or (N, C, H, W).
        variant: "paper" (the formula above, default) or "authors-code".
        internal_batch_size: path points per forward/backward pass (default 64; None: all).
    """

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, steps: int = 50,
                 baseline: BaselineSpec = "black", variant: str = "paper", blur_sigma: float = BLUR_SIGMA,
                 relu: Optional[bool] = None, internal_batch_size: Optional[int] = INTERNAL_BATCH_SIZE,
                 reshape: Optional[Callable[[Tensor], Tensor]] = None):
        super().__init__(model, layer, relu=relu, internal_batch_size=internal_batch_size, reshape=reshape)
        self.steps = check_positive_int(steps, "steps")
        self.baseline = check_choice(baseline, BASELINES, "baseline", tensor_ok=True)
        self.variant = check_choice(variant, VARIANTS, "variant", tensor_ok=False)
        self.blur_sigma = check_sigma(blur_sigma, "blur_sigma")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(layer={self.layer_name!r}, steps={self.steps}, "
                f"variant={self.variant!r}, relu={self.relu})")

    def walk(self, x: Tensor, targets: Targets, baseline: Tensor,
             left: bool) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
        """Batches of path points: yields (image, s, A, g, y) for rows γ(t_s), s = 1..m, with
        t_s = s/m (or (s − 1)/m when ``left``)."""
        m = self.steps
        expanded = targets.repeat_interleave(m)
        for rows, image, s in expanded_rows(x.shape[0], m, self.internal_batch_size, x.device):
            s = s + 1
            t = (s - 1 if left else s).to(torch.float32) / m
            activation, grads, scores = self.activations_and_gradients(
                along_path(baseline[image], x[image], t), expanded, rows)
            yield image, s, activation.float(), grads.float(), scores

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        self.target_layer(x)
        targets = self.fix_targets(x, targets)
        baseline = make_baseline(self.baseline, x, self.blur_sigma)
        authors = self.variant == "authors-code"
        base_activation = None if authors else layer_outputs(self, baseline)[0]
        total = None
        for image, _, activation, grads, _ in self.walk(x, targets, baseline, left=authors):
            weights = grads.mean(dim=(-2, -1))
            if authors:
                terms = weighted_sum(weights, activation).relu()
            else:
                terms = weighted_sum(weights, activation - base_activation[image])
            total = accumulate(total, image, terms, x.shape[0])
        maps = total / self.steps
        return maps.relu() if self.relu else maps

    def layer_attribution(self, x: Tensor, target: TargetSpec = None, *,
                          return_delta: bool = False) -> Union[Tensor, tuple[Tensor, Tensor]]:
        r"""Element-wise layer attribution (a Riemann–Stieltjes sum along the path, t_s = s/m):

        .. math:: a = \sum_{s=1}^{m} \frac{\partial y^c}{\partial A}(\gamma(t_s)) \odot
                  \big(A(\gamma(t_s)) - A(\gamma(t_{s-1}))\big), \qquad
                  \textstyle\sum a \to y^c(x) - y^c(x') \ (m \to \infty)

        Returns a (N, C, h, w), or (N, K, C, h, w) for an (N, K) target; with ``return_delta``
        also the completeness gap Σa − (y^c(x) − y^c(x′)) per image (and target).
        """
        check_images(x, self.model)
        targets = self.fix_targets(x, Targets.parse(target, x.shape[0], x.device))
        self.target_layer(x)
        baseline = make_baseline(self.baseline, x, self.blur_sigma)
        base_activation, base_scores = layer_outputs(self, baseline, targets)
        total, final_scores, previous = None, None, base_activation[:1]
        for image, s, activation, grads, scores in self.walk(x, targets, baseline, left=False):
            before = torch.cat([previous, activation[:-1]])
            before = torch.where((s == 1).reshape(-1, 1, 1, 1), base_activation[image], before)
            previous = activation[-1:]
            total = accumulate(total, image, grads * (activation - before).unsqueeze(1), x.shape[0])
            last = s == self.steps
            final_scores = accumulate(final_scores, image[last], scores[last].float(), x.shape[0])
        squeeze = targets.squeeze if targets.fn is None else total.shape[1] == 1
        delta = total.flatten(2).sum(-1) - (final_scores - base_scores.float())
        if squeeze:
            total, delta = total[:, 0], delta[:, 0]
        return (total, delta) if return_delta else total


# --------------------------------------------------------------------------- Expected Grad-CAM

@register("expected-gradcam")
class ExpectedGradCAM(GradientCAM):
    r"""Expected Grad-CAM (Buono et al., 2024, https://arxiv.org/abs/2406.01274).

    The smoothed expectation of the perturbed integrated gradients: Integrated Grad-CAM's
    integrand with the baseline drawn from a reference distribution D, the path position t
    from a law T (uniform by default) and Gaussian input noise (kernel smoothing):

    .. math:: M = \mathrm{ReLU}\Big(\mathbb{E}_{x'\sim D,\ t\sim T,\ \varepsilon\sim\mathcal N(0,\sigma^2 I)}
              \Big[\sum_k \bar\alpha_k(z_0 + \varepsilon)\big(A^k(z_0) - A^k(x')\big)\Big]\Big),
              \qquad z_0 = x' + t\,(x - x')

    estimated with S = ``samples`` draws. With D a point mass at a baseline, σ = 0 and T uniform,
    M is an unbiased Monte-Carlo estimate of the integral that Integrated Grad-CAM (the "paper"
    variant, same baseline) approximates with a Riemann sum; the error shrinks as S^{-1/2}
    (faster with ``t_law="stratified"``).

    >>> cam = ExpectedGradCAM(model, layer="layer4", references=train_images, sigma=0.1, seed=0)
    >>> maps = cam(x)                          # (N, H, W) in [0, 1]
    >>> maps_again = cam(x)                    # identical: seed= restarts the stream each call

    Args:
        samples: S, the number of draws (x′, t, ε) per image (default 32).
        references: D: a tensor (R, C, H, W) of reference images (e.g. other images of the data
            set, drawn uniformly) or a built-in sampler: "black" (point mass at 0), "blur" (point
            mass at the blurred image), "uniform-noise" (x′ ~ U[0, 1] per pixel, default),
            "shuffled-pixels" (x with its pixel positions randomly permuted).
        sigma: σ of the input noise ε in pixel-value units (default 0.1; 0 disables it).
        t_law: law of t: "uniform" (default), "stratified" (one uniform draw in each of S equal
            bins), a constant in [0, 1], or a callable (n, generator) → n values in [0, 1].
        seed, generator: reproducibility: a seed restarts the same stream on every call, a
            generator is consumed; neither draws a seed from torch's global RNG.
        internal_batch_size: samples per forward/backward pass (default 64; None: all).
    """

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, samples: int = 32,
                 references: BaselineSpec = "uniform-noise", sigma: float = 0.1, t_law: TLaw = "uniform",
                 blur_sigma: float = BLUR_SIGMA, seed: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, relu: Optional[bool] = None,
                 internal_batch_size: Optional[int] = INTERNAL_BATCH_SIZE,
                 reshape: Optional[Callable[[Tensor], Tensor]] = None):
        super().__init__(model, layer, relu=relu, internal_batch_size=internal_batch_size, reshape=reshape)
        self.samples = check_positive_int(samples, "samples")
        self.references = check_choice(references, SAMPLERS, "references", tensor_ok=True)
        self.sigma = check_sigma(sigma)
        self.blur_sigma = check_sigma(blur_sigma, "blur_sigma")
        if isinstance(t_law, str):
            check_choice(t_law, T_LAWS, "t_law", tensor_ok=False)
        elif isinstance(t_law, (int, float)) and not isinstance(t_law, bool):
            if not 0 <= t_law <= 1:
                raise ValueError(f"a constant t_law must lie in [0, 1], got {t_law}")
        elif not callable(t_law):
            raise TypeError(f"t_law must be one of {T_LAWS}, a number in [0, 1] or a callable "
                            f"(n, generator) -> (n,) tensor, got {type(t_law).__name__}")
        self.t_law = t_law
        check_randomness(seed, generator)
        self.seed, self.generator = seed, generator

    def __repr__(self) -> str:
        references = (self.references if isinstance(self.references, str)
                      else f"tensor{tuple(self.references.shape)}")
        return (f"{type(self).__name__}(layer={self.layer_name!r}, samples={self.samples}, "
                f"references={references!r}, sigma={self.sigma}, t_law={self.t_law!r}, relu={self.relu})")

    def draw_t(self, n: int, generator: torch.Generator) -> Tensor:
        """n·S path positions t (image-major) from ``t_law``, on the generator's device."""
        total, device = n * self.samples, generator.device
        if self.t_law == "uniform":
            return torch.rand(total, generator=generator, device=device, dtype=torch.float32)
        if self.t_law == "stratified":
            bins = torch.arange(self.samples, device=device, dtype=torch.float32).repeat(n)
            jitter = torch.rand(total, generator=generator, device=device, dtype=torch.float32)
            return (bins + jitter) / self.samples
        if not callable(self.t_law):
            return torch.full((total,), float(self.t_law), device=device, dtype=torch.float32)
        t = self.t_law(total, generator)
        if not torch.is_tensor(t) or t.shape != (total,) or not ((t >= 0) & (t <= 1)).all():
            raise ValueError(f"t_law must return a ({total},) tensor of values in [0, 1], got "
                             f"{tuple(t.shape) if torch.is_tensor(t) else type(t).__name__}")
        return t.float()

    def point_mass(self, x: Tensor) -> Optional[Tensor]:
        """The (N, C, H, W) reference when D is a point mass per image, else None."""
        if torch.is_tensor(self.references):
            references = check_images_like(self.references, x, "references", per_image_ok=False)
            return references.expand_as(x) if references.shape[0] == 1 else None
        if self.references in ("black", "blur"):
            return make_baseline(self.references, x, self.blur_sigma)
        return None

    def draw_references(self, x: Tensor, image: Tensor, seeds: list[int]) -> Tensor:
        """References x′ of a chunk of rows from a random built-in sampler (one per row)."""
        shape = x.shape[1:]
        if self.references == "uniform-noise":
            return per_row(seeds, x.device,
                           lambda g: torch.rand(shape, generator=g, device=x.device, dtype=x.dtype))
        pixels = shape[-2] * shape[-1]
        perms = per_row(seeds, x.device, lambda g: torch.randperm(pixels, generator=g, device=x.device))
        flat = x[image].flatten(2)
        return flat.gather(2, perms.unsqueeze(1).expand_as(flat)).reshape(-1, *shape)

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        self.target_layer(x)
        targets = self.fix_targets(x, targets)
        n, samples = x.shape[0], self.samples
        generator = make_generator(self.seed, self.generator)
        t = self.draw_t(n, generator).to(x.device)
        fixed = self.point_mass(x)
        reference_set = index = reference_seeds = None
        if fixed is None and torch.is_tensor(self.references):
            reference_set = check_images_like(self.references, x, "references", per_image_ok=False)
            index = torch.randint(0, reference_set.shape[0], (n * samples,), generator=generator,
                                  device=generator.device).to(x.device)
        elif fixed is None:
            reference_seeds = draw_seeds(generator, n * samples)
        noise_seeds = draw_seeds(generator, n * samples) if self.sigma > 0 else None
        fixed_activation = None if fixed is None else layer_outputs(self, fixed)[0]
        expanded = targets.repeat_interleave(samples)
        total = None
        for rows, image, _ in expanded_rows(n, samples, self.internal_batch_size, x.device):
            if fixed is not None:
                references = fixed[image]
            elif reference_set is not None:
                references = reference_set[index[rows]]
            else:
                references = self.draw_references(x, image, reference_seeds[rows])
            z0 = along_path(references, x[image], t[rows])
            noisy = z0 if noise_seeds is None else z0 + self.sigma * per_row(
                noise_seeds[rows], x.device, lambda g: torch.randn(x.shape[1:], generator=g, device=x.device,
                                                                   dtype=x.dtype))
            activation, grads, _ = self.activations_and_gradients(noisy, expanded, rows)
            if noise_seeds is not None:
                activation = layer_outputs(self, z0)[0]
            reference_activation = (fixed_activation[image] if fixed is not None
                                    else layer_outputs(self, references)[0])
            terms = weighted_sum(grads.float().mean(dim=(-2, -1)), activation.float() - reference_activation)
            total = accumulate(total, image, terms, n)
        maps = total / samples
        return maps.relu() if self.relu else maps


# --------------------------------------------------------------------------- Smooth Grad-CAM++

@register("smooth-gradcam++")
class SmoothGradCAMPlusPlus(GradientCAM):
    r"""Smooth Grad-CAM++ (Omeiza et al., 2019, https://arxiv.org/abs/1908.01224).

    Grad-CAM++ (exponential trick, see :class:`~camkit.GradCAMPlusPlus`) with the gradient
    moments averaged over S noisy copies x + ε_s, ε_s ~ N(0, σ²I), and A of the clean image:

    .. math:: G_p = \frac1S\sum_{s=1}^{S}\big(g(x+\varepsilon_s)\big)^p,\qquad
              \alpha^k_{ij} = \frac{G^k_{2,ij}}{2G^k_{2,ij} + \sum_{ab}A^k_{ab}\,G^k_{3,ij}},\qquad
              w_k = \sum_{ij}\alpha^k_{ij}\,\mathrm{ReLU}(G^k_{1,ij}),\qquad
              M = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    With σ = 0 it is exactly Grad-CAM++ (and only one pass is made).

    >>> cam = SmoothGradCAMPlusPlus(model, layer="layer4", samples=25, sigma=0.15, seed=0)
    >>> maps = cam(x)                          # (N, H, W) in [0, 1]
    >>> raw = cam(x, normalize=False, upsample=False)

    Args:
        samples: S, the number of noisy copies (default 25).
        sigma: σ of the noise in pixel-value units (default 0.15, 15 % of the [0, 1] range).
        seed, generator: reproducibility, as in :class:`ExpectedGradCAM`.
        internal_batch_size: noisy copies per forward/backward pass (default 64; None: all).
    """

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, samples: int = 25, sigma: float = 0.15,
                 seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
                 relu: Optional[bool] = None, internal_batch_size: Optional[int] = INTERNAL_BATCH_SIZE,
                 reshape: Optional[Callable[[Tensor], Tensor]] = None):
        super().__init__(model, layer, relu=relu, internal_batch_size=internal_batch_size, reshape=reshape)
        self.samples = check_positive_int(samples, "samples")
        self.sigma = check_sigma(sigma)
        check_randomness(seed, generator)
        self.seed, self.generator = seed, generator

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(layer={self.layer_name!r}, samples={self.samples}, "
                f"sigma={self.sigma}, relu={self.relu})")

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        self.target_layer(x)
        targets = self.fix_targets(x, targets)
        n = x.shape[0]
        samples = self.samples if self.sigma > 0 else 1
        seeds = draw_seeds(make_generator(self.seed, self.generator), n * samples) if self.sigma > 0 else None
        activation = layer_outputs(self, x)[0]
        expanded = targets.repeat_interleave(samples)
        moments = None
        for rows, image, _ in expanded_rows(n, samples, self.internal_batch_size, x.device):
            noisy = x[image]
            if seeds is not None:
                noisy = noisy + self.sigma * per_row(seeds[rows], x.device, lambda g: torch.randn(
                    x.shape[1:], generator=g, device=x.device, dtype=x.dtype))
            grads = self.activations_and_gradients(noisy, expanded, rows)[1].float()
            powers = torch.stack([grads, grads ** 2, grads ** 3], dim=1)  # (B, 3, K, C, h, w)
            moments = accumulate(moments, image, powers, n)
        g1, g2, g3 = (moments / samples).unbind(1)
        weights = (moment_alpha(activation, g2, g3) * g1.relu()).sum(dim=(-2, -1))
        maps = weighted_sum(weights, activation)
        return maps.relu() if self.relu else maps


def moment_alpha(activation: Tensor, g2: Tensor, g3: Tensor) -> Tensor:
    """Grad-CAM++ α (B, K, C, h, w) from A (B, C, h, w) and gradient moments G2, G3 (B, K, C, h, w).

    α = 0 where G2 = 0 or the denominator vanishes, as in :func:`camkit.gradcampp_alpha`.
    """
    total = activation.sum(dim=(-2, -1), keepdim=True).unsqueeze(1)
    denominator = 2 * g2 + total * g3
    usable = (g2 != 0) & (denominator != 0)
    return torch.where(usable, g2 / torch.where(usable, denominator, torch.ones_like(denominator)),
                       torch.zeros_like(g2))


# --------------------------------------------------------------------------- Score-CAM

@register("scorecam")
class ScoreCAM(BaseCAM):
    r"""Score-CAM (Wang et al., CVPR-W 2020, https://arxiv.org/abs/1910.01279). Gradient-free.

    Each map, upsampled and min-max normalised, :math:`H^k = \mathrm{norm}(\mathrm{up}(A^k))`,
    reveals the input over the baseline; the gain of the class score weights the map:

    .. math:: w_k = s^c\big(x' + H^k \odot (x - x')\big) - s^c(x'),
              \qquad M = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    s^c is the softmax probability of class c (``softmax=True``, default; a callable target then
    receives probabilities) or the logit (``softmax=False``). With the black baseline the masked
    input is x ⊙ H^k, as in the paper. A constant channel gets H^k = 0, hence w_k = 0.
    (torchcam and pytorch-grad-cam instead weight by softmax_k of the logits over channels.)

    >>> cam = ScoreCAM(model, layer="layer4", internal_batch_size=64)
    >>> maps = cam(x)                          # (N, H, W) in [0, 1]
    >>> w = cam.score_weights(x)               # (N, C) channel weights

    Args:
        baseline: x′ as in :class:`IntegratedGradCAM` (default "black").
        softmax: score masked inputs by probability (True, default) or by logit.
        max_channels: keep only the channels with the largest mean activation (per image); the
            others get w_k = 0. None (default) scores every channel.
        internal_batch_size: masked inputs per forward pass (default 64; None: all).
    """

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, baseline: BaselineSpec = "black",
                 softmax: bool = True, max_channels: Optional[int] = None, blur_sigma: float = BLUR_SIGMA,
                 relu: Optional[bool] = None, internal_batch_size: Optional[int] = INTERNAL_BATCH_SIZE,
                 reshape: Optional[Callable[[Tensor], Tensor]] = None):
        super().__init__(model, layer, relu=relu, internal_batch_size=internal_batch_size, reshape=reshape)
        self.baseline = check_choice(baseline, BASELINES, "baseline", tensor_ok=True)
        self.softmax = bool(softmax)
        self.max_channels = check_positive_int(max_channels, "max_channels", allow_none=True)
        self.blur_sigma = check_sigma(blur_sigma, "blur_sigma")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(layer={self.layer_name!r}, softmax={self.softmax}, "
                f"max_channels={self.max_channels}, relu={self.relu})")

    def score(self, logits: Tensor) -> Tensor:
        """What a masked input is scored by: class probabilities or the logits themselves."""
        return logits.softmax(dim=1) if self.softmax else logits

    def score_weights(self, x: Tensor, target: TargetSpec = None) -> Tensor:
        """The channel weights w_k: (N, C), or (N, K, C) for an (N, K) target."""
        check_images(x, self.model)
        targets = Targets.parse(target, x.shape[0], x.device)
        weights = self.activations_and_weights(x, targets)[1]
        squeeze = targets.squeeze if targets.fn is None else weights.shape[1] == 1
        return weights[:, 0] if squeeze else weights

    def activations_and_weights(self, x: Tensor, targets: Targets) -> tuple[Tensor, Tensor]:
        """A (N, C, h, w) of x and the weights w (N, K, C)."""
        self.target_layer(x)
        targets = self.fix_targets(x, targets)
        baseline = make_baseline(self.baseline, x, self.blur_sigma)
        activation = layer_outputs(self, x)[0]
        base_scores = layer_outputs(self, baseline, targets, self.score)[1].float()
        n, channels = activation.shape[:2]
        kept = channels if self.max_channels is None else min(self.max_channels, channels)
        order = activation.mean(dim=(-2, -1)).topk(kept, dim=1).indices  # (N, kept)
        expanded = targets.repeat_interleave(kept)
        weights = base_scores.new_zeros(n, base_scores.shape[1], channels)
        for rows, image, position in expanded_rows(n, kept, self.internal_batch_size, x.device):
            channel = order[image, position]
            masks = normalize_maps(upsample_maps(activation[image, channel].unsqueeze(1), x.shape[-2:]))
            masked = torch.lerp(baseline[image], x[image], masks.to(x.dtype))
            with torch.no_grad():
                scores = expanded.scores(self.score(self.model(masked)), rows).float()
            weights[image, :, channel] = scores - base_scores[image]
        return activation, weights

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        activation, weights = self.activations_and_weights(x, targets)
        maps = torch.einsum("nkc,nchw->nkhw", weights, activation)
        return maps.relu() if self.relu else maps
