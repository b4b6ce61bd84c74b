r"""Faithfulness, localization and sanity metrics for class activation maps, batched on the device.

Every metric takes images x (N, C, H, W) in [0, 1] pixel space (black = 0) on the model's device
and maps E (N, H, W) on the same device, as camkit's methods return them (upsampled to H × W and
min-max normalised to [0, 1]). Work stays on that device; long loops show a tqdm bar
(``progress=False`` hides it) and send at most ``internal_batch_size`` inputs through the model at
once. The vocabulary is the methods' (see :mod:`camkit.common`): ``steps`` for path points,
``samples`` for random draws, ``seed``/``generator``, baselines "black"/"blur"/"mean" with
``blur_sigma`` (:mod:`camkit.transforms`).

Notation: c is the target class of an image (``target=None``: the model's top-1 class on x),
f_c(x) its score. The model returns logits; ``score="prob"`` scores with the softmax probability
p_c(x) (as Grad-CAM++, the IISc report and RISE do), ``score="logit"`` with the logit.

>>> maps = camkit.GradCAM(model, "layer4")(x)
>>> conf = metrics.keep_confidence(model, x, maps)
>>> metrics.average_drop(conf), metrics.increase_in_confidence(conf)
>>> metrics.deletion(model, x, maps).auc
"""
from __future__ import annotations

import copy
import warnings
from typing import Callable, Literal, Mapping, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common import (batched, check_positive_int, check_randomness, check_sigma, default_internal_batch_size,
                      draw_seeds, make_generator, model_device, per_row, renamed_keywords, row_chunks)
from ..methods.base import AUTO, BatchSizeSpec, Targets, TargetSpec, capture_activation, check_images
from ..methods.layers import LayerSpec, resolve_layer
from ..transforms import BaselineSpec, gaussian_blur, gaussian_kernel, make_baseline, separable_conv

Score = Literal["prob", "logit"]
Baseline = BaselineSpec
#: σ (pixels) of the "blur" canvas of insertion, as in RISE (which truncates its kernel at 11 taps).
RISE_BLUR_SIGMA = 5.0
#: Regions of a batch: (N, H, W) bool masks, (N, 4) or (N, K, 4) boxes, or a list of N items
#: (an (H, W) bool mask, one box, or several boxes as a list / (K, 4) tensor). Boxes are
#: (x0, y0, x1, y1) in pixels; pixel (i, j) is inside when its centre (j + ½, i + ½) lies in
#: [x0, x1) × [y0, y1), so integer boxes cover ``mask[y0:y1, x0:x1]``.
Regions = Union[Tensor, Sequence]
Explainer = Callable[[nn.Module, Tensor, Tensor], Tensor]

__all__ = [
    "Confidence", "Curve", "Randomization", "keep_confidence", "remove_confidence", "average_drop",
    "increase_in_confidence", "win", "insertion", "deletion", "infidelity", "region_masks",
    "pointing_game", "energy_pointing_game", "bbox_score", "spearman", "ssim", "model_randomization",
    "saturation_curve", "blur", "path_gradient_change",
]


class Confidence(NamedTuple):
    """Scores of the target classes before (Y = f_c(x)) and after (O = f_c(x̃)) a perturbation, (N,) each."""
    before: Tensor
    after: Tensor
    classes: Tensor


class Curve(NamedTuple):
    """A curve per image: abscissae x (S,), values y (N, S) and the trapezoid area under y, auc (N,)."""
    x: Tensor
    y: Tensor
    auc: Tensor


class Randomization(NamedTuple):
    """Similarity of the maps of a progressively randomised model to the original maps, (L, N) each."""
    layers: list[str]
    spearman: Tensor
    ssim: Tensor


# --------------------------------------------------------------------------- shared helpers

def _check_maps(maps: Tensor, n: int, size: Sequence[int], device: torch.device, *, unit: bool = False,
                name: str = "maps") -> Tensor:
    """Validate (N, H, W) maps: finite, non-negative (at most 1 when ``unit``), on ``device``; float32."""
    if not torch.is_tensor(maps):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, H, W), got {type(maps).__name__}")
    expected = (n, *size)
    if tuple(maps.shape) != expected:
        hint = ""
        if maps.ndim == 4 and maps.shape[1] == 1:
            hint = " (drop the channel dimension with maps[:, 0])"
        elif maps.ndim == 3 and maps.shape[0] == n:
            hint = " (upsample to the image size first: camkit.upsample_maps or the method's upsample=True)"
        raise ValueError(f"{name} must have shape (N, H, W) = {expected}, got {tuple(maps.shape)}{hint}")
    if maps.device != device:
        raise ValueError(f"{name} are on {maps.device} but the images/model are on {device}; move one with .to()")
    maps = maps.detach().float()
    if not torch.isfinite(maps).all():
        raise ValueError(f"{name} contain NaN or Inf values")
    if (maps < 0).any():
        raise ValueError(f"{name} must be non-negative (min {maps.min().item():.3g}); "
                         "use relu=True or camkit.normalize_maps")
    if unit and (maps > 1 + 1e-6).any():
        raise ValueError(f"{name} must lie in [0, 1] (max {maps.max().item():.3g}); scale them with "
                         "camkit.normalize_maps first")
    return maps


def _check_model_input(model: nn.Module, x: Tensor) -> None:
    """Images valid and on the model's device; warn when dropout / batch statistics make scores random."""
    check_images(x, model)
    if model.training:
        warnings.warn("the model is in training mode: dropout and batch statistics make the metric random; "
                      "call model.eval() first", stacklevel=3)


def _check_score(score: str) -> str:
    if score not in ("prob", "logit"):
        raise ValueError(f"score must be 'prob' (softmax probability) or 'logit', got {score!r}")
    return score


def _target_scores(logits: Tensor, classes: Tensor, score: str) -> Tensor:
    """f_c: the (B,) softmax probabilities or logits of ``classes`` from (B, classes) logits."""
    if logits.ndim != 2:
        raise ValueError(f"the model returns shape {tuple(logits.shape)}, not (N, classes) logits")
    if score == "prob":
        logits = logits.float().softmax(1)
    return logits.gather(1, classes[:, None])[:, 0].float()


def _rows(internal_batch_size: BatchSizeSpec, device: torch.device) -> Optional[int]:
    """``internal_batch_size`` checked, with "auto" resolved for ``device``."""
    if internal_batch_size == AUTO:
        return default_internal_batch_size(device)
    return check_positive_int(internal_batch_size, "internal_batch_size", allow_none=True)


def _batched(fn: Callable[[Tensor], Tensor], n: int, device: torch.device, internal_batch_size: BatchSizeSpec,
             progress: bool, desc: str) -> Tensor:
    """cat([fn(idx) for chunks idx of arange(n)]) without autograd: each chunk is one model batch."""
    return batched(fn, n, device, _rows(internal_batch_size, device), progress=progress, desc=desc)


def _prepare(model: nn.Module, x: Tensor, maps: Tensor, target: TargetSpec, score: str,
             internal_batch_size: BatchSizeSpec, progress: bool, *,
             unit: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Check the inputs; return maps (N, H, W) float32, classes c (N,) and clean scores f_c(x) (N,)."""
    _check_model_input(model, x)
    _check_score(score)
    _rows(internal_batch_size, x.device)
    maps = _check_maps(maps, x.shape[0], x.shape[-2:], x.device, unit=unit)
    targets = Targets.parse(target, x.shape[0], x.device)
    if targets.fn is not None or targets.k != 1:
        raise ValueError("metrics need one class index per image: target=None (top-1), an int, or N ints")
    logits = _batched(lambda i: model(x[i]), x.shape[0], x.device, internal_batch_size, progress, "clean")
    classes = targets.indices(logits)[:, 0]
    return maps, classes, _target_scores(logits, classes, score)


def _pixel_rank(maps: Tensor) -> Tensor:
    """Rank (N, H·W) of each pixel when sorted by decreasing map value; ties go in raster order.

    The tie rule (a stable sort) makes every ranking metric defined for constant maps: the pixels
    are then taken row by row from the top-left corner.
    """
    flat = maps.flatten(1)
    order = flat.sort(dim=1, descending=True, stable=True).indices
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def _replace_top(rank: Tensor, counts: Tensor, top: Tensor, rest: Tensor) -> Tensor:
    """Images (B, C, H, W) with the ``counts`` (B,) best-ranked pixels from ``top``, the rest from ``rest``."""
    mask = (rank < counts[:, None]).reshape(rank.shape[0], 1, *top.shape[-2:])
    return torch.where(mask, top, rest)


def blur(x: Tensor, sigma: float = RISE_BLUR_SIGMA) -> Tensor:
    """The "blur" baseline of the metrics: :func:`camkit.transforms.gaussian_blur` with σ = 5 pixels
    (RISE's σ; camkit's kernel has radius ⌈3σ⌉ instead of RISE's 11 taps, and replicates edges)."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"blur needs sigma > 0 (pixels), got {sigma!r}")
    return gaussian_blur(x, float(sigma))


def _baseline_image(x: Tensor, baseline: Baseline, blur_sigma: float = RISE_BLUR_SIGMA) -> Tensor:
    """The image that replaces removed pixels (:func:`camkit.transforms.make_baseline`): "black",
    "mean", "blur" (σ = ``blur_sigma``), a number, or a tensor broadcastable to x."""
    return make_baseline(baseline, x, check_sigma(blur_sigma, "blur_sigma"))


# --------------------------------------------------------------------------- confidence change

@renamed_keywords(batch_size="internal_batch_size")
def keep_confidence(model: nn.Module, x: Tensor, maps: Tensor, target: TargetSpec = None, *,
                    score: Score = "prob", internal_batch_size: BatchSizeSpec = 64,
                    progress: bool = True) -> Confidence:
    r"""Score of the target class on the explained region only, x ⊙ E ("multiply the image by the CAM").

    .. math:: Y = f_c(x), \qquad O = f_c(x \odot E)

    the first method of the IISc report and the input of Average Drop / Increase in Confidence
    (Chattopadhay et al., Grad-CAM++, WACV 2018, https://arxiv.org/abs/1710.11063, Sec. 4.1).
    E (N, H, W) must lie in [0, 1] and is broadcast over the channels; f_c is the softmax
    probability by default (``score="logit"`` for the logit).

    >>> conf = keep_confidence(model, x, camkit.GradCAM(model, "layer4")(x))
    >>> average_drop(conf)
    """
    maps, classes, before = _prepare(model, x, maps, target, score, internal_batch_size, progress, unit=True)
    after = _batched(lambda i: _target_scores(model(x[i] * maps[i, None]), classes[i], score),
                     x.shape[0], x.device, internal_batch_size, progress, "keep")
    return Confidence(before, after, classes)


@renamed_keywords(batch_size="internal_batch_size")
def remove_confidence(model: nn.Module, x: Tensor, maps: Tensor, target: TargetSpec = None, *,
                      p: float = 25.0, baseline: Baseline = "black", blur_sigma: float = RISE_BLUR_SIGMA,
                      score: Score = "prob", internal_batch_size: BatchSizeSpec = 64,
                      progress: bool = True) -> Confidence:
    r"""Score of the target class after removing the top-p % most important pixels (IISc report, method 2).

    .. math:: O = f_c\big(x \odot (1 - T_p) + b \odot T_p\big), \qquad T_p = [\,\mathrm{rank}_E(i) < \mathrm{round}(p \cdot HW / 100)\,]

    where rank_E orders the pixels by decreasing E (ties in raster order) and b is the baseline:
    ``"black"``, ``"mean"`` (each image's channel means), ``"blur"`` (:func:`blur`, σ = ``blur_sigma``),
    a number or a tensor. A faithful map makes O drop. p must lie in (0, 100).
    """
    if not 0 < p < 100:
        raise ValueError(f"p is a percentage of pixels and must lie in (0, 100), got {p}")
    maps, classes, before = _prepare(model, x, maps, target, score, internal_batch_size, progress)
    rank = _pixel_rank(maps)
    count = torch.full((x.shape[0],), round(p * rank.shape[1] / 100), device=x.device)
    removed = _replace_top(rank, count, _baseline_image(x, baseline, blur_sigma), x)
    after = _batched(lambda i: _target_scores(model(removed[i]), classes[i], score),
                     x.shape[0], x.device, internal_batch_size, progress, "remove")
    return Confidence(before, after, classes)


def average_drop(conf: Confidence, *, per_image: bool = False) -> Tensor:
    r"""Average Drop % (Chattopadhay et al., Grad-CAM++, Eq. 20): lower is better.

    .. math:: \mathrm{AD} = \frac{100}{N} \sum_i \frac{\max(0,\, Y_i - O_i)}{Y_i}

    with Y, O from :func:`keep_confidence` (softmax probabilities, so Y > 0). ``per_image=True``
    returns the N terms 100·max(0, Y_i − O_i)/Y_i instead of their mean (for paired statistics).
    """
    if (conf.before <= 0).any():
        raise ValueError("Average Drop divides by Y and needs positive scores; use score='prob'")
    drops = 100 * (conf.before - conf.after).clamp_min(0) / conf.before
    return drops if per_image else drops.mean()


def increase_in_confidence(conf: Confidence, *, per_image: bool = False) -> Tensor:
    r"""Increase in Confidence % (Chattopadhay et al., Grad-CAM++, Sec. 4.1.2): 100 · mean(O > Y); higher is better.

    ``per_image=True`` returns the N indicators 100·[O_i > Y_i] instead of their mean.
    """
    increases = 100 * (conf.after > conf.before).float()
    return increases if per_image else increases.mean()


def win(a: Confidence, b: Confidence) -> Tensor:
    r"""Win % of method A over method B (Grad-CAM++, Sec. 4.1.3): share of images where A's O is higher.

    .. math:: \mathrm{Win}_{A/B} = \frac{100}{N} \sum_i \big([O^A_i > O^B_i] + \tfrac12 [O^A_i = O^B_i]\big)

    Ties count half, so Win_{A/B} + Win_{B/A} = 100. Both must score the same images and classes.
    """
    if a.after.shape != b.after.shape or not torch.equal(a.classes, b.classes):
        raise ValueError("win compares two methods on the same images and target classes; got batches of "
                         f"{a.after.shape[0]} and {b.after.shape[0]} or different classes")
    return 100 * ((a.after > b.after).float() + 0.5 * (a.after == b.after).float()).mean()


# --------------------------------------------------------------------------- insertion / deletion

def _pixel_path_curve(model: nn.Module, x: Tensor, maps: Tensor, target: TargetSpec, canvas: Baseline,
                      blur_sigma: float, insert: bool, steps: int, score: str, internal_batch_size: BatchSizeSpec,
                      progress: bool) -> Curve:
    """Scores along the path that moves the best-ranked pixels from x onto a canvas (or the reverse)."""
    check_positive_int(steps, "steps")
    maps, classes, _ = _prepare(model, x, maps, target, score, internal_batch_size, progress)
    rank = _pixel_rank(maps)
    background = _baseline_image(x, canvas, blur_sigma)
    top, rest = (x, background) if insert else (background, x)
    points = steps + 1
    pixels = rank.shape[1]

    def scores(j: Tensor) -> Tensor:
        i, k = j // points, j % points
        counts = (k * pixels) // steps  # n_k = ⌊k·HW / steps⌋ pixels changed at step k
        return _target_scores(model(_replace_top(rank[i], counts, top[i], rest[i])), classes[i], score)

    y = _batched(scores, x.shape[0] * points, x.device, internal_batch_size, progress,
                 "insertion" if insert else "deletion").reshape(x.shape[0], points)
    fractions = torch.linspace(0, 1, points, device=x.device)
    return Curve(fractions, y, torch.trapezoid(y, fractions, dim=1))


_PATH_DOC = r"""

    Pixels are ranked by decreasing E (ties in raster order). At step k = 0 … steps the
    n_k = ⌊k · HW / steps⌋ best-ranked pixels have been {verb}; the curve is the softmax
    probability f_c of each such image against the fraction k / steps, and the score is its
    trapezoid-rule area under the curve, in [0, 1] for probabilities:

    .. math:: \mathrm{{AUC}} = \frac{{1}}{{n}} \sum_{{k=1}}^{{n}} \frac{{f_c(x_{{k-1}}) + f_c(x_k)}}{{2}}

    All N · (steps + 1) images go through the model in batches of ``internal_batch_size``.
    Returns :class:`Curve` (fractions (steps + 1,), scores (N, steps + 1), auc (N,)).
    """


@renamed_keywords(n_steps="steps", batch_size="internal_batch_size")
def insertion(model: nn.Module, x: Tensor, maps: Tensor, target: TargetSpec = None, *, steps: int = 100,
              canvas: Baseline = "blur", blur_sigma: float = RISE_BLUR_SIGMA, score: Score = "prob",
              internal_batch_size: BatchSizeSpec = 64, progress: bool = True) -> Curve:
    return _pixel_path_curve(model, x, maps, target, canvas, blur_sigma, True, steps, score, internal_batch_size,
                             progress)


@renamed_keywords(n_steps="steps", batch_size="internal_batch_size")
def deletion(model: nn.Module, x: Tensor, maps: Tensor, target: TargetSpec = None, *, steps: int = 100,
             canvas: Baseline = "black", blur_sigma: float = RISE_BLUR_SIGMA, score: Score = "prob",
             internal_batch_size: BatchSizeSpec = 64, progress: bool = True) -> Curve:
    return _pixel_path_curve(model, x, maps, target, canvas, blur_sigma, False, steps, score, internal_batch_size,
                             progress)


insertion.__doc__ = r"""Insertion AUC (Petsiuk et al., RISE, BMVC 2018, https://arxiv.org/abs/1806.07421), (N,): higher
    is better.

    Image pixels are inserted into a canvas, by default x blurred by :func:`blur` (σ = ``blur_sigma`` = 5 px,
    RISE's σ); ``canvas`` also takes 'black', 'mean', a number or a tensor; ``blur_sigma`` sets the blur.""" + _PATH_DOC.format(
    verb="copied from x onto the canvas")
deletion.__doc__ = r"""Deletion AUC (Petsiuk et al., RISE, BMVC 2018, https://arxiv.org/abs/1806.07421), (N,): lower
    is better.

    Pixels are deleted from x, i.e. replaced by the canvas, black (0) by default as in RISE;
    ``canvas`` also takes 'mean', 'blur', a number or a tensor.""" + _PATH_DOC.format(
    verb="replaced by the canvas")


# --------------------------------------------------------------------------- infidelity

def _perturbations(rows: Tensor, seeds: Sequence[int], kind: str, sigma: float, square_size: int) -> Tensor:
    """Perturbations I (B, C, H, W) for the images ``rows``, each drawn from its own row seed
    (:func:`camkit.common.per_row`), so a result does not depend on ``internal_batch_size``."""
    shape = rows.shape[1:]
    if kind == "gaussian":
        return sigma * per_row(seeds, rows.device, lambda g: torch.randn(shape, generator=g, device=rows.device,
                                                                         dtype=rows.dtype))
    corners = per_row(seeds, rows.device, lambda g: torch.stack([
        torch.randint(0, n - square_size + 1, (), generator=g, device=rows.device) for n in shape[-2:]]))
    ii = torch.arange(shape[-2], device=rows.device)
    jj = torch.arange(shape[-1], device=rows.device)
    inside_i = (ii >= corners[:, :1]) & (ii < corners[:, :1] + square_size)
    inside_j = (jj >= corners[:, 1:]) & (jj < corners[:, 1:] + square_size)
    square = (inside_i[:, :, None] & inside_j[:, None, :]).unsqueeze(1)
    return rows * square.to(rows.dtype)


@renamed_keywords(n_perturb="samples", batch_size="internal_batch_size")
def infidelity(model: nn.Module, x: Tensor, maps: Union[Tensor, Mapping[str, Tensor]], target: TargetSpec = None, *,
               perturbation: Literal["gaussian", "square"] = "gaussian", samples: int = 50,
               sigma: float = 0.1, square_size: Optional[int] = None, normalize: bool = True,
               score: Score = "logit", seed: Optional[int] = 0, generator: Optional[torch.Generator] = None,
               internal_batch_size: BatchSizeSpec = 64, progress: bool = True) -> Union[Tensor, dict[str, Tensor]]:
    r"""Infidelity (Yeh et al., NeurIPS 2019, https://arxiv.org/abs/1901.09392), (N,); lower is better.

    .. math:: \mathrm{INFD}(\Phi, f, x) = \mathbb{E}_I\Big[\big(\beta\, I^\top \Phi - (f_c(x) - f_c(x - I))\big)^2\Big],
              \qquad \beta = \frac{\mathbb{E}_I[I^\top\Phi\,(f_c(x) - f_c(x - I))]}{\mathbb{E}_I[(I^\top\Phi)^2]}

    The attribution Φ is the map E broadcast over the channels. β is the optimal scale of Φ
    (captum's ``infidelity(..., normalize=True)``; ``normalize=False`` uses β = 1), so the score
    measures faithfulness, not the arbitrary scale of a normalised map; β = 0 when IᵀΦ ≡ 0.
    The expectation is the mean over ``samples`` perturbations per image of

    - ``"gaussian"``: I ~ N(0, σ²) per pixel and channel (x − I is a noisy image);
    - ``"square"``: I = x ⊙ S for a random square S of side ``square_size`` (default ⌊min(H, W)/4⌋),
      so x − I blacks the square out.

    f_c is the logit by default, as in captum's examples (``score="prob"`` for probabilities).
    ``seed`` (default 0) or ``generator`` fix the draws, as in the methods: each perturbation comes
    from its own row seed, so results repeat across runs and ``internal_batch_size``.

    ``maps`` may be a mapping ``{name: (N, H, W) maps}`` (several methods on the same images): the
    model's passes f_c(x − I) do not depend on the map, so they are made once and shared, and the
    result is ``{name: (N,)}``, equal to one call per map with the same ``seed``.
    """
    single = not isinstance(maps, Mapping)
    named = {None: maps} if single else dict(maps)
    if not named:
        raise ValueError("maps is an empty mapping; give at least one {name: (N, H, W) maps}")
    if perturbation not in ("gaussian", "square"):
        raise ValueError(f"perturbation must be 'gaussian' or 'square', got {perturbation!r}")
    check_positive_int(samples, "samples")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    check_randomness(seed, generator)
    first, *others = named.values()
    first, classes, clean = _prepare(model, x, first, target, score, internal_batch_size, progress)
    maps = torch.stack([first, *(_check_maps(m, x.shape[0], x.shape[-2:], x.device) for m in others)])  # (K, N, H, W)
    side = max(1, min(x.shape[-2:]) // 4) if square_size is None else check_positive_int(square_size, "square_size")
    if side > min(x.shape[-2:]):
        raise ValueError(f"square_size {side} does not fit in images of size {tuple(x.shape[-2:])}")
    seeds = draw_seeds(make_generator(seed, generator), x.shape[0] * samples)

    def dot_and_diff(j: Tensor) -> Tensor:
        i = j // samples
        noise = _perturbations(x[i], [seeds[k] for k in j.tolist()], perturbation, sigma, side)
        dots = torch.stack([(noise * m[i, None]).sum(dim=(1, 2, 3)) for m in maps], 1)   # (B, K): I^T Phi
        diff = clean[i] - _target_scores(model(x[i] - noise), classes[i], score)
        return torch.cat([dots, diff[:, None]], 1)

    both = _batched(dot_and_diff, x.shape[0] * samples, x.device, internal_batch_size, progress,
                    "infidelity").double().reshape(x.shape[0], samples, maps.shape[0] + 1)
    dot, diff = both[..., :-1], both[..., -1:]                           # (N, samples, K), (N, samples, 1)
    if normalize:
        energy = dot.pow(2).sum(1, keepdim=True)
        beta = (dot * diff).sum(1, keepdim=True) / torch.where(energy > 0, energy, torch.ones_like(energy))
        dot = dot * beta
    scores = (dot - diff).pow(2).mean(1).float()                          # (N, K)
    return scores[:, 0] if single else dict(zip(named, scores.T))


# --------------------------------------------------------------------------- localization

def _box_mask(boxes, size: Sequence[int], device: torch.device, where: str) -> Tensor:
    """Union (H, W) of (K, 4) boxes (x0, y0, x1, y1), with checks."""
    boxes = torch.as_tensor(boxes).to(device, torch.float32)
    if boxes.ndim == 1:
        boxes = boxes.reshape(-1, 4) if boxes.numel() in (0, 4) else boxes
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where} must be a box (x0, y0, x1, y1), a list of boxes, a (K, 4) tensor or an "
                         f"(H, W) bool mask, got shape {tuple(boxes.shape)}")
    if boxes.shape[0] == 0:
        raise ValueError(f"{where} has no boxes")
    height, width = size
    x0, y0, x1, y1 = boxes.unbind(1)
    if ((x0 < 0) | (y0 < 0) | (x1 > width) | (y1 > height)).any():
        raise ValueError(f"{where}: box {boxes.tolist()} lies (partly) outside the {width} × {height} image; "
                         "boxes are (x0, y0, x1, y1) pixels with 0 <= x0 < x1 <= W, 0 <= y0 < y1 <= H")
    if ((x1 <= x0) | (y1 <= y0)).any():
        raise ValueError(f"{where}: box {boxes.tolist()} is empty (needs x0 < x1 and y0 < y1)")
    rows = torch.arange(height, device=device) + 0.5
    cols = torch.arange(width, device=device) + 0.5
    inside_y = (rows >= y0[:, None]) & (rows < y1[:, None])
    inside_x = (cols >= x0[:, None]) & (cols < x1[:, None])
    return (inside_y[:, :, None] & inside_x[:, None, :]).any(0)


def region_masks(regions: Regions, n: int, size: Sequence[int], device: torch.device = torch.device("cpu")) -> Tensor:
    """Boolean masks (N, H, W) of ground-truth regions given as masks or boxes (see :data:`Regions`).

    Several boxes of one image are united. Raises on a count other than N, boxes outside the image,
    empty boxes and regions that cover no pixel.
    """
    height, width = size
    if torch.is_tensor(regions) and regions.dtype == torch.bool:
        if tuple(regions.shape) != (n, height, width):
            raise ValueError(f"region masks must have shape (N, H, W) = {(n, height, width)}, "
                             f"got {tuple(regions.shape)}")
        masks = regions.to(device)
    else:
        if torch.is_tensor(regions) and regions.ndim == 2 and regions.shape[-1] == 4:
            regions = regions[:, None]  # (N, 4): one box per image
        if len(regions) != n:
            raise ValueError(f"regions hold {len(regions)} images but there are N = {n} maps")
        masks = torch.stack([
            item.to(device) if torch.is_tensor(item) and item.dtype == torch.bool
            else _box_mask(item, size, device, f"regions[{index}]")
            for index, item in enumerate(regions)])
        if masks.shape[1:] != (height, width):
            raise ValueError(f"region masks must be (H, W) = {(height, width)}, got {tuple(masks.shape[1:])}")
    empty = (~masks.flatten(1).any(1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"the regions of images {empty} cover no pixel (a box must contain a pixel centre)")
    return masks


def _localization_inputs(maps: Tensor, regions: Regions) -> tuple[Tensor, Tensor]:
    if not torch.is_tensor(maps) or maps.ndim != 3:
        raise ValueError(f"maps must be a (N, H, W) tensor, got "
                         f"{tuple(maps.shape) if torch.is_tensor(maps) else type(maps).__name__}")
    maps = _check_maps(maps, maps.shape[0], maps.shape[-2:], maps.device)
    return maps, region_masks(regions, maps.shape[0], maps.shape[-2:], maps.device)


def pointing_game(maps: Tensor, regions: Regions, *, tolerance: int = 0) -> Tensor:
    r"""Pointing game (Zhang et al., ECCV 2016, https://arxiv.org/abs/1608.00507): hits (N,) bool.

    .. math:: \mathrm{hit}_i = [\,\arg\max_{p} E_i(p) \in R_i \oplus D_t\,],
              \qquad \mathrm{accuracy} = \mathrm{mean}_i\ \mathrm{hit}_i

    R_i is the region (union of boxes, or mask) dilated by a disc D_t of radius ``tolerance`` pixels
    (Zhang et al. use 15 at 224 px). Several maxima: the first in raster order counts, so a constant
    map points at the top-left pixel. ``pointing_game(...).float().mean()`` is the accuracy.
    """
    maps, masks = _localization_inputs(maps, regions)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative int (pixels), got {tolerance!r}")
    if tolerance:
        offsets = torch.arange(-tolerance, tolerance + 1, device=maps.device, dtype=torch.float32)
        disc = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= tolerance ** 2).float()[None, None]
        masks = F.conv2d(masks.float()[:, None], disc, padding=tolerance)[:, 0] > 0
    peak = maps.flatten(1).argmax(1, keepdim=True)
    return masks.flatten(1).gather(1, peak)[:, 0]


def energy_pointing_game(maps: Tensor, regions: Regions) -> Tensor:
    r"""Energy-based pointing game (Wang et al., Score-CAM, CVPRW 2020, https://arxiv.org/abs/1910.01279), (N,).

    .. math:: \mathrm{EBPG}_i = \frac{\sum_{p \in R_i} E_i(p)}{\sum_{p} E_i(p)}

    the share of the map's energy inside the region; 0 for an all-zero map (no energy anywhere).
    """
    maps, masks = _localization_inputs(maps, regions)
    total = maps.flatten(1).sum(1)
    inside = (maps * masks).flatten(1).sum(1)
    return torch.where(total > 0, inside / torch.where(total > 0, total, torch.ones_like(total)),
                       torch.zeros_like(total))


def bbox_score(maps: Tensor, regions: Regions) -> Tensor:
    r"""Bounding-box score (Schulz et al. 2020; Sattarzadeh et al., Integrated Grad-CAM, ICASSP 2021), (N,).

    .. math:: \mathrm{BB}_i = \frac{|\,\mathrm{top}_{n_i}(E_i) \cap R_i\,|}{n_i}, \qquad n_i = |R_i|

    the share of the n_i highest-valued pixels (n_i = area of the region, the union of the boxes)
    that fall inside it; ties are broken in raster order, so a constant map gives a defined score.
    """
    maps, masks = _localization_inputs(maps, regions)
    area = masks.flatten(1).sum(1)
    top = _pixel_rank(maps) < area[:, None]
    return (top & masks.flatten(1)).sum(1).float() / area.float()


# --------------------------------------------------------------------------- sanity: randomisation

def _check_pair(a: Tensor, b: Tensor) -> None:
    if not (torch.is_tensor(a) and torch.is_tensor(b)) or a.ndim != 3 or a.shape != b.shape:
        raise ValueError("expected two (N, H, W) map tensors of the same shape, got "
                         f"{getattr(a, 'shape', type(a).__name__)} and {getattr(b, 'shape', type(b).__name__)}")


def _average_ranks(values: Tensor) -> Tensor:
    """Ranks (N, M) of each row with ties given their average rank (as scipy.stats.rankdata)."""
    n, m = values.shape
    sorted_values, order = values.sort(dim=1, stable=True)
    starts = torch.ones_like(sorted_values, dtype=torch.bool)
    starts[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    group = (starts.cumsum(1) - 1 + m * torch.arange(n, device=values.device)[:, None]).flatten()
    position = torch.arange(m, device=values.device, dtype=torch.float64).repeat(n)
    total = torch.zeros(n * m, dtype=torch.float64, device=values.device).index_add_(0, group, position)
    count = torch.zeros_like(total).index_add_(0, group, torch.ones_like(position))
    mean_rank = (total[group] / count[group]).reshape(n, m)
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    r"""Spearman rank correlation (N,) between maps a and b (N, H, W), the Pearson correlation of their ranks.

    .. math:: \rho = \frac{\sum_p (r_a(p) - \bar r_a)(r_b(p) - \bar r_b)}{\lVert r_a - \bar r_a\rVert\,\lVert r_b - \bar r_b\rVert}

    Ties get their average rank (as ``scipy.stats.spearmanr``). ρ = 0 when either map is
    constant (there is no ranking to agree with), never NaN. Used by Adebayo et al. 2018.
    """
    _check_pair(a, b)
    ra, rb = (_average_ranks(m.detach().flatten(1)) for m in (a, b))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    norm = ra.norm(dim=1) * rb.norm(dim=1)
    rho = (ra * rb).sum(1) / torch.where(norm > 0, norm, torch.ones_like(norm))
    return rho.float()


def ssim(a: Tensor, b: Tensor, *, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> Tensor:
    r"""Structural similarity (N,) of maps a and b (N, H, W) (Wang et al., IEEE TIP 2004).

    .. math:: \mathrm{SSIM} = \mathrm{mean}_p \frac{(2\mu_a\mu_b + C_1)(2\sigma_{ab} + C_2)}{(\mu_a^2 + \mu_b^2 + C_1)(\sigma_a^2 + \sigma_b^2 + C_2)},
              \quad C_1 = (0.01 L)^2,\ C_2 = (0.03 L)^2

    with local statistics under a Gaussian window (``window`` 11 taps, σ 1.5) over the positions
    where it fits, L = ``data_range`` (1 for camkit's maps). Equals
    ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``. Defined (C₁, C₂ > 0) for constant maps.
    """
    _check_pair(a, b)
    if min(a.shape[-2:]) < window:
        raise ValueError(f"ssim needs maps of at least {window} × {window} pixels, got {tuple(a.shape[-2:])}")
    a, b = a.detach().double(), b.detach().double()
    kernel = gaussian_kernel(window, sigma, a.device).double()
    stats = separable_conv(torch.stack([a, b, a * a, b * b, a * b], 1), kernel, "valid")
    mu_a, mu_b, aa, bb, ab = stats.unbind(1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    var_a, var_b, cov = aa - mu_a ** 2, bb - mu_b ** 2, ab - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1).float()


def _reinitialize(module: nn.Module, seed: int, device: torch.device) -> None:
    """Re-draw every parameter of ``module`` and of its submodules (so a container such as
    ``layer3`` is randomised whole): each one's ``reset_parameters()`` (its default initialisation),
    else N(0, 0.02²) per parameter; seeded without touching the caller's random state. A module
    with no parameters at all raises ``ValueError`` (randomising it would change nothing)."""
    if not any(True for _ in module.parameters()):
        raise ValueError(f"{type(module).__name__} has no parameters to randomise; name a layer that has some")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        with torch.no_grad():
            for part in module.modules():
                if hasattr(part, "reset_parameters"):
                    part.reset_parameters()
                else:
                    for parameter in part.parameters(recurse=False):
                        parameter.normal_(0, 0.02)


def model_randomization(model: nn.Module, x: Tensor, explain: Explainer, target: TargetSpec = None, *,
                        layers: Optional[Sequence[str]] = None, cascading: bool = True, seed: int = 0,
                        progress: bool = True) -> Randomization:
    r"""Model-parameter randomisation test (Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018).

    Layers are re-initialised from the top (output) down; after each, the maps are recomputed and
    compared with the original maps E⁰ by :func:`spearman` and :func:`ssim`:

    .. math:: \rho_\ell = \mathrm{Spearman}(E^0, E^{\le \ell}), \qquad s_\ell = \mathrm{SSIM}(E^0, E^{\le \ell})

    A method that explains the model gives similarities that fall as more layers are randomised.

    Args:
        explain: ``explain(model, x, classes) -> (N, H, W)`` maps in [0, 1], e.g.
            ``lambda m, x, c: camkit.GradCAM(m, "layer4")(x, c)``; it receives a copy of the model.
        target: classes to explain; they are fixed on the original model (top-1 by default) and
            reused for every randomised copy.
        layers: names of the modules to randomise, in order; default: every module with its own
            parameters, in reverse registration order (the top first).
        cascading: randomise cumulatively (True, Adebayo's cascading test) or one layer at a time.
        seed: seeds the re-initialisation (layer ℓ uses ``seed + ℓ``); the global RNG is untouched.

    Returns :class:`Randomization` (layer names, spearman (L, N), ssim (L, N)). The model is not modified.
    """
    _check_model_input(model, x)
    targets = Targets.parse(target, x.shape[0], x.device)
    with torch.no_grad():
        classes = targets.indices(model(x))[:, 0]
    original = _check_maps(explain(model, x, classes), x.shape[0], x.shape[-2:], x.device, name="explain's maps")
    modules = dict(model.named_modules())
    if layers is None:
        owners = [name for name, m in modules.items() if name and next(m.parameters(recurse=False), None) is not None]
        layers = owners[::-1]
    else:
        layers = [resolve_layer(model, name)[0] for name in layers]
    if not layers:
        raise ValueError("the model has no modules with parameters to randomise")
    device = model_device(model)
    randomized = copy.deepcopy(model)
    rho, sim = [], []
    from tqdm.auto import tqdm

    for step, name in enumerate(tqdm(layers, desc="randomise", leave=False, disable=not progress)):
        if not cascading:
            randomized = copy.deepcopy(model)
        _reinitialize(dict(randomized.named_modules())[name], seed + step, device)
        maps = _check_maps(explain(randomized, x, classes), x.shape[0], x.shape[-2:], x.device,
                           name="explain's maps")
        rho.append(spearman(original, maps))
        sim.append(ssim(original, maps))
    return Randomization(list(layers), torch.stack(rho), torch.stack(sim))


# --------------------------------------------------------------------------- saturation

@renamed_keywords(n_alphas="steps", batch_size="internal_batch_size")
def saturation_curve(model: nn.Module, layer: LayerSpec, x: Tensor, *, steps: int = 21,
                     baseline: Baseline = "black", blur_sigma: float = RISE_BLUR_SIGMA,
                     internal_batch_size: BatchSizeSpec = 64, progress: bool = True) -> Curve:
    r"""Internal saturation curve (as motivated in Expected Grad-CAM, Buono et al. 2024), (N, steps).

    .. math:: s_i(\alpha) = \cos\big(A(b + \alpha (x_i - b)),\ A(x_i)\big), \qquad \alpha \in [0, 1]

    at ``steps`` evenly spaced α. A is the target layer's embedding (flattened), b the baseline
    (``"black"`` gives the α·x scaling path; also 'mean', 'blur', a number or a tensor). A curve that
    reaches ≈ 1 early means the layer saturates: gradients at x say little about most of the path.
    The cosine of a zero embedding is 0. Returns :class:`Curve` (α (steps,), s (N, steps), auc (N,)).
    """
    _check_model_input(model, x)
    check_positive_int(steps, "steps")
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (α = 0 and 1), got {steps}")
    name, module = resolve_layer(model, layer)
    start = _baseline_image(x, baseline, blur_sigma)
    alphas = torch.linspace(0, 1, steps, device=x.device)

    def embed(inputs: Tensor) -> Tensor:
        with capture_activation(module, name, detach_below=False) as capture:
            model(inputs)
        return capture.get().flatten(1).float()

    reference = _batched(lambda i: embed(x[i]), x.shape[0], x.device, internal_batch_size, progress, "embed")

    def similarity(j: Tensor) -> Tensor:
        i, alpha = j // steps, alphas[j % steps].reshape(-1, 1, 1, 1)
        return F.cosine_similarity(embed(start[i] + alpha * (x[i] - start[i])), reference[i], dim=1)

    y = _batched(similarity, x.shape[0] * steps, x.device, internal_batch_size, progress,
                 "saturation").reshape(x.shape[0], steps)
    return Curve(alphas, y, torch.trapezoid(y, alphas, dim=1))





# --------------------------------------------------------------------------- the head along the path

@renamed_keywords(batch_size="internal_batch_size")
def path_gradient_change(model: nn.Module, layer: LayerSpec, x: Tensor, target: TargetSpec = None, *,
                         steps: int = 16, baseline: Baseline = "black", blur_sigma: float = 10.0,
                         internal_batch_size: BatchSizeSpec = AUTO, progress: bool = True) -> Tensor:
    r"""How much Grad-CAM's channel weights change along the path from the baseline to x, (N,).

    .. math:: V = \frac{1}{m}\sum_{s=1}^{m} \frac{\lVert \bar\alpha(\gamma(t_s)) - \bar\alpha(x)\rVert_2}
              {\lVert \bar\alpha(x)\rVert_2}, \qquad t_s = s/m,\ \gamma(t) = x' + t\,(x - x')

    with ᾱ_k = mean_ij ∂y^c/∂A^k_ij the Grad-CAM weights at the target layer. V measures what the
    part of the network *above* the layer does along the path: V = 0 exactly when the head is
    GAP + linear (the gradient is w^c/Z everywhere), and it grows when the head saturates or
    switches (ReLUs) along the path. Integrated Grad-CAM can only differ from Grad-CAM (beyond the
    baseline term A − A(x′)) where V > 0, so V is the per-image measure of where its mechanism acts.
    ``target`` as in the methods (None: top-1 on x, held fixed along the path).
    """
    from ..methods.sampled import along_path
    from ..methods.single_pass import GradCAM

    check_positive_int(steps, "steps")
    _check_model_input(model, x)
    cam = GradCAM(model, layer, internal_batch_size=internal_batch_size)
    targets = cam.fix_targets(x, Targets.parse(target, x.shape[0], x.device))
    if targets.k != 1:
        raise ValueError("path_gradient_change takes one target per image")
    start = _baseline_image(x, baseline, blur_sigma)
    expanded = targets.repeat_interleave(steps)
    weights = []
    rows_all = list(row_chunks(x.shape[0] * steps, cam.rows_per_pass(x.device)))
    if progress and len(rows_all) > 1:
        from tqdm.auto import tqdm

        rows_all = tqdm(rows_all, desc="path gradients", leave=False)
    for rows in rows_all:
        r = torch.arange(rows.start, rows.stop, device=x.device)
        image, t = torch.div(r, steps, rounding_mode="floor"), (r % steps + 1).float() / steps
        _, grads, _ = cam.activations_and_gradients(along_path(start[image], x[image], t), expanded, rows)
        weights.append(grads[:, 0].float().flatten(2).mean(-1))
    w = torch.cat(weights).reshape(x.shape[0], steps, -1)
    final = w[:, -1:]
    change = (w - final).norm(dim=-1) / final.norm(dim=-1).clamp_min(1e-12)
    return change.mean(1)


from .debiased_removal import ROAD_PERCENTAGES, Road, linear_imputation, road, road_combined  # noqa: E402  (uses the helpers above)

__all__ += ["Road", "road", "road_combined", "linear_imputation", "ROAD_PERCENTAGES"]
