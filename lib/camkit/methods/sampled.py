r"""Sampled-gradient CAMs: Integrated Grad-CAM, Expected Grad-CAM, Smooth Grad-CAM++.

Notation (the same as the notebooks): A^k(z) is channel k of the target layer for input z,
g^k(z) = ∂y^c(z)/∂A^k(z), :math:`\bar\alpha_k(z) = \frac{1}{Z}\sum_{ij} g^k_{ij}(z)` the Grad-CAM
weight, x′ a baseline and γ(t) = x′ + t (x − x′) the straight path. Every quantity lives in the
model's input space, [0, 1] pixels for camkit's models (black = 0, noise σ in pixel-value units).

All three average a Grad-CAM integrand over S inputs z_s sampled around each image x:

.. math:: M = \frac1S \sum_{s=1}^{S} \sum_k \bar\alpha_k(z_s)\,\big(A^k(\tilde z_s) - A^k(x'_s)\big)

:class:`SampledGradientCAM` owns the loop (pin the targets, expand each image into S rows, send
them through the model in chunks of ``internal_batch_size``, accumulate per-image sums on the
model's device, average); a method only says which inputs to run and which reference activation
to subtract (:meth:`SampledGradientCAM.sample`). Peak memory depends on ``internal_batch_size``,
not on S. Random draws come from per-row streams, so a seeded map does not depend on
``internal_batch_size``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Union

import torch
from torch import Tensor, nn

from ..common import (check_choice, check_images_like, check_positive_int, check_randomness, check_sigma,
                      draw_seeds, make_generator, per_row, row_chunks)
from ..transforms import BASELINES, BaselineSpec, make_baseline
from .base import (AUTO, BatchSizeSpec, GradientCAM, Targets, TargetSpec, check_images, register, spatial_dims,
                   weighted_sum)
from .layers import LayerSpec
from .single_pass import gradcampp_alpha

TLaw = Union[str, float, Callable[[int, torch.Generator], Tensor]]

#: Built-in reference samplers of Expected Grad-CAM (or a tensor of reference images).
SAMPLERS = ("black", "blur", "uniform-noise", "shuffled-pixels")
#: Laws of the path position t of Expected Grad-CAM (or a constant in [0, 1], or a callable).
T_LAWS = ("uniform", "stratified")
#: Readings of Integrated Grad-CAM.
VARIANTS = ("paper", "authors-code")
#: Default rows per forward pass of the multi-pass methods: "auto" = 16 on a CPU, 64 on an accelerator.
INTERNAL_BATCH_SIZE = AUTO
#: Default spatial standard deviation (pixels) of the "blur" baseline.
BLUR_SIGMA = 10.0


# --------------------------------------------------------------------------- shared loop helpers

def along_path(baseline: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """γ(t) = x′ + t (x − x′) row by row (torch.lerp: exactly x at t = 1 and x′ at t = 0)."""
    return torch.lerp(baseline, x, t.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1))))


def expanded_rows(n: int, times: int, size: Optional[int],
                  device: torch.device) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """Chunks of the n·times rows of a batch where each image is repeated ``times`` times.

    Yields (rows, image, s): the slice of expanded rows, each row's image index and its
    position s in 0..times−1.
    """
    for rows in row_chunks(n * times, size):
        r = torch.arange(rows.start, rows.stop, device=device)
        yield rows, torch.div(r, times, rounding_mode="floor"), r % times


def accumulate(total: Optional[Tensor], image: Tensor, terms: Tensor, n: int) -> Tensor:
    """Add per-row ``terms`` into per-image sums (n, ...), allocated on first use."""
    if total is None:
        total = terms.new_zeros((n, *terms.shape[1:]))
    return total.index_add_(0, image, terms)


def gaussian_noise(seeds: list[int], like: Tensor, sigma: float) -> Tensor:
    """σ·ε (B, C, H, W), ε ~ N(0, I) drawn per row from its seed (shape, device and dtype of one row of ``like``)."""
    return sigma * per_row(seeds, like.device, lambda g: torch.randn(like.shape[1:], generator=g,
                                                                     device=like.device, dtype=like.dtype))


# --------------------------------------------------------------------------- the shared loop

@dataclass
class Sample:
    """What one chunk of sampled rows contributes (B rows).

    ``inputs``: the rows whose gradients ∂y/∂A are taken; ``activation_inputs``: the rows whose
    activation enters the integrand (None: ``inputs``); ``reference``: the activation A(x′) to
    subtract, (B, C, h, w) (None: nothing).
    """

    inputs: Tensor
    reference: Optional[Tensor] = None
    activation_inputs: Optional[Tensor] = None


class SampledGradientCAM(GradientCAM):
    r"""Base of the methods that average a Grad-CAM integrand over S sampled inputs per image.

    .. math:: M = \frac1S\sum_{s=1}^{S} \sum_k \bar\alpha_k(z_s)\big(A^k(\tilde z_s) - A^k_{\mathrm{ref},s}\big)

    A method overrides :meth:`sample` (the rows z_s, z̃_s and the reference activation of a chunk)
    and, when it needs per-call state (a baseline, random draws), :meth:`prepare`.
    :meth:`integrand` and :meth:`average` can be overridden for other per-row terms (Smooth
    Grad-CAM++ averages gradient moments instead).
    """

    def samples_per_image(self) -> int:
        """S, the rows per image."""
        return self.samples

    def prepare(self, x: Tensor) -> dict[str, Any]:
        """Per-call state shared by all chunks (a baseline, random draws). Default: nothing."""
        return {}

    def sample(self, x: Tensor, image: Tensor, position: Tensor, rows: slice, context: dict[str, Any]) -> Sample:
        """The rows of one chunk: ``image`` (B,) image indices, ``position`` (B,) s in 0..S−1,
        ``rows`` the chunk's slice of the n·S rows (to index per-row draws). Each method implements this."""
        raise NotImplementedError

    def passes(self, x: Tensor, targets: Targets,
               context: dict[str, Any]) -> Iterator[tuple[Tensor, Tensor, Sample, Tensor, Tensor, Tensor]]:
        """Run every chunk: yields (image, position, sample, A, g, y) with A of the activation inputs
        (B, C, h, w) float32, g (B, K, C, h, w) float32 and y (B, K)."""
        expanded = targets.repeat_interleave(self.samples_per_image())
        for rows, image, position in expanded_rows(x.shape[0], self.samples_per_image(),
                                                   self.rows_per_pass(x.device), x.device):
            drawn = self.sample(x, image, position, rows, context)
            activation, grads, scores = self.activations_and_gradients(drawn.inputs, expanded, rows)
            if drawn.activation_inputs is not None:
                activation = self.layer_outputs(drawn.activation_inputs)[0]
            yield image, position, drawn, activation.float(), grads.float(), scores

    def integrand(self, activation: Tensor, grads: Tensor, drawn: Sample) -> Tensor:
        """Per-row terms (B, K, h, w): Σ_k ᾱ_k(z) (A^k(z̃) − A^k_ref)."""
        if drawn.reference is not None:
            activation = activation - drawn.reference
        return weighted_sum(grads.mean(dim=spatial_dims(grads, 3)), activation)

    def average(self, mean: Tensor, x: Tensor, context: dict[str, Any]) -> Tensor:
        """The map from the per-image mean of the integrand (default: the mean itself)."""
        return mean

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        self.target_layer(x)
        targets = self.fix_targets(x, targets)
        context = self.prepare(x)
        total = None
        for image, _, drawn, activation, grads, _ in self.passes(x, targets, context):
            total = accumulate(total, image, self.integrand(activation, grads, drawn), x.shape[0])
        return self.average(total / self.samples_per_image(), x, context)


# --------------------------------------------------------------------------- Integrated Grad-CAM

@register("integrated-gradcam", "Integrated Grad-CAM")
class IntegratedGradCAM(SampledGradientCAM):
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
            "mean" (each image's mean colour), a number, or a tensor (C, H, W), (1, C, H, W) or (N, C, H, W).
        variant: "paper" (the formula above, default) or "authors-code".
        internal_batch_size: path points per forward/backward pass (default "auto": 16 on a CPU,
            64 on a GPU; None: all).
    """

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, steps: int = 50,
                 baseline: BaselineSpec = "black", variant: str = "paper", blur_sigma: float = BLUR_SIGMA,
                 internal_batch_size: BatchSizeSpec = INTERNAL_BATCH_SIZE, **options):
        super().__init__(model, layer, internal_batch_size=internal_batch_size, **options)
        self.steps = check_positive_int(steps, "steps")
        self.baseline = check_baseline(baseline)
        self.variant = check_choice(variant, VARIANTS, "variant", tensor_ok=False)
        self.blur_sigma = check_sigma(blur_sigma, "blur_sigma")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(layer={self.layer_name!r}, steps={self.steps}, "
                f"variant={self.variant!r}, relu={self.relu})")

    def samples_per_image(self) -> int:
        return self.steps

    def prepare(self, x: Tensor) -> dict[str, Any]:
        baseline = make_baseline(self.baseline, x, self.blur_sigma)
        left = self.variant == "authors-code"
        return {"baseline": baseline, "left": left,
                "base_activation": None if left else self.layer_outputs(baseline)[0]}

    def sample(self, x: Tensor, image: Tensor, position: Tensor, rows: slice, context: dict[str, Any]) -> Sample:
        """Path points γ(t_s), t_s = s/m for s = 1..m (left points (s − 1)/m for the authors' code)."""
        t = (position if context["left"] else position + 1).to(torch.float32) / self.steps
        base = context.get("base_activation")
        return Sample(along_path(context["baseline"][image], x[image], t),
                      reference=None if base is None else base[image])

    def integrand(self, activation: Tensor, grads: Tensor, drawn: Sample) -> Tensor:
        terms = super().integrand(activation, grads, drawn)
        return terms.relu() if self.variant == "authors-code" else terms

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
        base_activation, base_scores = self.layer_outputs(baseline, targets)
        context = {"baseline": baseline, "left": False}
        total, final_scores, previous = None, None, base_activation[:1]
        for image, s, _, activation, grads, scores in self.passes(x, targets, context):
            s = s + 1
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

@register("expected-gradcam", "Expected Grad-CAM")
class ExpectedGradCAM(SampledGradientCAM):
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
        internal_batch_size: samples per forward/backward pass (default "auto": 16 on a CPU, 64 on a GPU).
    """

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, samples: int = 32,
                 references: BaselineSpec = "uniform-noise", sigma: float = 0.1, t_law: TLaw = "uniform",
                 blur_sigma: float = BLUR_SIGMA, seed: Optional[int] = None,
                 generator: Optional[torch.Generator] = None,
                 internal_batch_size: BatchSizeSpec = INTERNAL_BATCH_SIZE, **options):
        super().__init__(model, layer, internal_batch_size=internal_batch_size, **options)
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

    def prepare(self, x: Tensor) -> dict[str, Any]:
        """The call's draws, in a fixed order: t for every row, then the reference indices (a tensor
        of references) or the reference seeds (a random sampler), then the noise seeds."""
        n, samples = x.shape[0], self.samples
        generator = make_generator(self.seed, self.generator)
        context: dict[str, Any] = {"t": self.draw_t(n, generator).to(x.device), "fixed": self.point_mass(x)}
        if context["fixed"] is None and torch.is_tensor(self.references):
            context["reference_set"] = check_images_like(self.references, x, "references", per_image_ok=False)
            context["index"] = torch.randint(0, context["reference_set"].shape[0], (n * samples,),
                                             generator=generator, device=generator.device).to(x.device)
        elif context["fixed"] is None:
            context["reference_seeds"] = draw_seeds(generator, n * samples)
        context["noise_seeds"] = draw_seeds(generator, n * samples) if self.sigma > 0 else None
        if context["fixed"] is not None:
            context["fixed_activation"] = self.layer_outputs(context["fixed"])[0]
        return context

    def sample(self, x: Tensor, image: Tensor, position: Tensor, rows: slice, context: dict[str, Any]) -> Sample:
        """z₀ = x′ + t (x − x′) with x′ ~ D and t ~ T; gradients at z₀ + ε, activations at z₀."""
        if context["fixed"] is not None:
            references, reference = context["fixed"][image], context["fixed_activation"][image]
        else:
            if "reference_set" in context:
                references = context["reference_set"][context["index"][rows]]
            else:
                references = self.draw_references(x, image, context["reference_seeds"][rows])
            reference = self.layer_outputs(references)[0]
        z0 = along_path(references, x[image], context["t"][rows])
        if context["noise_seeds"] is None:
            return Sample(z0, reference)
        return Sample(z0 + gaussian_noise(context["noise_seeds"][rows], z0, self.sigma), reference,
                      activation_inputs=z0)


# --------------------------------------------------------------------------- Smooth Grad-CAM++

@register("smooth-gradcam++", "Smooth Grad-CAM++")
class SmoothGradCAMPlusPlus(SampledGradientCAM):
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
        internal_batch_size: noisy copies per forward/backward pass (default "auto").
    """

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, samples: int = 25, sigma: float = 0.15,
                 seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
                 internal_batch_size: BatchSizeSpec = INTERNAL_BATCH_SIZE, **options):
        super().__init__(model, layer, internal_batch_size=internal_batch_size, **options)
        self.samples = check_positive_int(samples, "samples")
        self.sigma = check_sigma(sigma)
        check_randomness(seed, generator)
        self.seed, self.generator = seed, generator

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(layer={self.layer_name!r}, samples={self.samples}, "
                f"sigma={self.sigma}, relu={self.relu})")

    def samples_per_image(self) -> int:
        return self.samples if self.sigma > 0 else 1

    def prepare(self, x: Tensor) -> dict[str, Any]:
        seeds = (draw_seeds(make_generator(self.seed, self.generator), x.shape[0] * self.samples)
                 if self.sigma > 0 else None)
        return {"seeds": seeds, "activation": self.layer_outputs(x)[0]}

    def sample(self, x: Tensor, image: Tensor, position: Tensor, rows: slice, context: dict[str, Any]) -> Sample:
        """Noisy copies x + ε_s (x itself when σ = 0)."""
        if context["seeds"] is None:
            return Sample(x[image])
        return Sample(x[image] + gaussian_noise(context["seeds"][rows], x, self.sigma))

    def integrand(self, activation: Tensor, grads: Tensor, drawn: Sample) -> Tensor:
        """The gradient moments g, g², g³ of each row: (B, 3, K, C, h, w)."""
        return torch.stack([grads, grads ** 2, grads ** 3], dim=1)

    def average(self, mean: Tensor, x: Tensor, context: dict[str, Any]) -> Tensor:
        """Grad-CAM++ from the averaged moments G₁, G₂, G₃ and A of the clean image."""
        g1, g2, g3 = mean.unbind(1)
        activation = context["activation"]
        weights = (gradcampp_alpha(activation, g2, g3) * g1.relu()).sum(dim=spatial_dims(g1, 3))
        return weighted_sum(weights, activation)


def check_baseline(value) -> BaselineSpec:
    """A baseline setting: a name of :data:`camkit.transforms.BASELINES` (old "zero" accepted), a number or images."""
    from ..common import renamed_value
    from ..transforms import BASELINE_ALIASES

    value = renamed_value(value, BASELINE_ALIASES, "baseline")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return check_choice(value, BASELINES, "baseline", tensor_ok=True)
