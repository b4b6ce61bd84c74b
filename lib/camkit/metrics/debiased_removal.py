r"""ROAD, RemOve And Debias (Rong et al., ICML 2022, https://arxiv.org/abs/2202.00449).

Removing pixels by painting them black or blurring them leaks the shape of the removed region,
which the model can read ("class information leakage"). ROAD instead *imputes* the removed pixels
with the noisy linear imputation of the paper: every removed pixel is the weighted mean of its
8 neighbours (weight 1/6 for the 4 direct neighbours, 1/12 for the diagonal ones, renormalised
at the image border), a sparse linear system over all removed pixels of a channel, plus small
Gaussian noise:

.. math:: \Big(\sum_{j \in \mathcal N(i)} w_{ij}\Big)\, u_i - \sum_{j \in \mathcal N(i) \cap R} w_{ij}\, u_j
          = \sum_{j \in \mathcal N(i) \setminus R} w_{ij}\, x_j \quad (i \in R), \qquad
          \tilde x_i = u_i + \sigma \varepsilon_i

R the removed pixels. The system is symmetric positive definite when at least one pixel is kept;
camkit solves it on the images' device with conjugate gradients (Jacobi-preconditioned, the
operator applied as a 3 × 3 convolution), for all images, channels and percentages at once.

MoRF removes the p % most relevant pixels (a faithful map makes the score drop), LeRF the p %
least relevant (the score should stay); pytorch-grad-cam's ``ROADMostRelevantFirst(percentile=q)``
*keeps* q % of the pixels, i.e. removes p = 100 − q %, and its averages over q = 10 … 90 equal
camkit's over p = 10 … 90.

>>> maps = camkit.GradCAM(model, "layer4")(x)
>>> morf = metrics.road(model, x, maps, order="morf", seed=0)      # Road(removed, after, before, change)
>>> metrics.road_combined(model, x, maps, seed=0)                 # (N,): (LeRF − MoRF) / 2, higher is better
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common import check_randomness, check_sigma, draw_seeds, make_generator, per_row
from ..methods.base import BatchSizeSpec, TargetSpec
from . import Score, _batched, _pixel_rank, _prepare, _target_scores

#: The removal percentages of the paper and of pytorch-grad-cam's ROAD averages.
ROAD_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
#: MoRF: remove the most relevant pixels first; LeRF: the least relevant first.
ORDERS = ("morf", "lerf")
#: Weights of the 8 neighbours in the noisy linear imputation (Rong et al.): 1/6 direct, 1/12 diagonal.
NEIGHBOUR_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))
#: Conjugate gradients stop when every system's residual is below this fraction of its right-hand side.
CG_TOLERANCE = 1e-6


class Road(NamedTuple):
    """ROAD scores of a batch: removal percentages (S,), f_c of the imputed images (N, S), f_c(x) (N,),
    and change (N,) = mean over the percentages of (after − before) (pytorch-grad-cam's per-image value)."""
    removed: Tensor
    after: Tensor
    before: Tensor
    change: Tensor


def linear_imputation(x: Tensor, removed: Tensor, *, tolerance: float = CG_TOLERANCE,
                      max_iterations: Optional[int] = None) -> Tensor:
    r"""The noise-free linear imputation of Rong et al.: x (B, C, H, W) with the pixels where
    ``removed`` (B, H, W) is True replaced by the solution u of the system above (each one the
    weighted mean of its neighbours).

    Conjugate gradients with a Jacobi preconditioner solve every (image, channel) system at once,
    until each residual is below ``tolerance`` times its right-hand side (or ``max_iterations``,
    default 20 · (H + W) + 100; the iterations grow with the diameter of the removed regions).
    A batch row with every pixel removed has nothing to impute from and gets zeros.
    """
    if not torch.is_tensor(removed) or removed.dtype != torch.bool or removed.shape != (x.shape[0], *x.shape[-2:]):
        raise ValueError(f"removed must be a (B, H, W) bool mask for images {tuple(x.shape)}, got "
                         f"{tuple(removed.shape) if torch.is_tensor(removed) else type(removed).__name__}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return _impute(x.to(dtype), removed.unsqueeze(1).to(dtype), tolerance, max_iterations).to(x.dtype)


def _impute(values: Tensor, unknown: Tensor, tolerance: float, max_iterations: Optional[int]) -> Tensor:
    """:func:`linear_imputation` of ``values`` (B, C, H, W) where ``unknown`` (B, 1, H, W) is 1."""
    channels, (height, width) = values.shape[1], values.shape[-2:]
    kernel = torch.tensor(NEIGHBOUR_WEIGHTS, dtype=values.dtype, device=values.device).reshape(1, 1, 3, 3)
    depthwise = kernel.expand(channels, 1, 3, 3).contiguous()

    def neighbours(z: Tensor) -> Tensor:
        return F.conv2d(z, depthwise, padding=1, groups=channels)

    degree = F.conv2d(torch.ones(1, 1, height, width, dtype=values.dtype, device=values.device), kernel, padding=1)
    degree = degree.clamp_min(torch.finfo(values.dtype).tiny)
    rhs = neighbours(values * (1 - unknown)) * unknown

    def operator(u: Tensor) -> Tensor:
        return (degree * u - neighbours(u)) * unknown

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return (a * b).sum(dim=(-2, -1), keepdim=True)

    def ratio(a: Tensor, b: Tensor) -> Tensor:
        return torch.where(b > 0, a / torch.where(b > 0, b, torch.ones_like(b)), torch.zeros_like(b))

    limit = 20 * (height + width) + 100 if max_iterations is None else max_iterations
    goal = tolerance * rhs.norm(dim=(-2, -1), keepdim=True)
    u, residual = torch.zeros_like(rhs), rhs.clone()
    z = residual / degree * unknown
    direction, rz = z.clone(), dot(residual, z)
    for _ in range(limit):
        if (residual.norm(dim=(-2, -1), keepdim=True) <= goal).all():
            break
        applied = operator(direction)
        step = ratio(rz, dot(direction, applied))
        u = u + step * direction
        residual = residual - step * applied
        z = residual / degree * unknown
        rz_next = dot(residual, z)
        direction = z + ratio(rz_next, rz) * direction
        rz = rz_next
    return torch.where(unknown > 0, u, values)


def _check_percentages(percentages) -> tuple[float, ...]:
    values = (percentages,) if isinstance(percentages, (int, float)) else tuple(percentages)
    if not values or any(isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < 100 for p in values):
        raise ValueError(f"percentages must be numbers in (0, 100) (the share of pixels removed), got {percentages!r}")
    return tuple(float(p) for p in values)


def road(model: nn.Module, x: Tensor, maps: Tensor, target: TargetSpec = None, *, order: str = "morf",
         percentages: Union[float, Sequence[float]] = ROAD_PERCENTAGES, noise: float = 0.01,
         seed: Optional[int] = None, generator: Optional[torch.Generator] = None, score: Score = "prob",
         internal_batch_size: BatchSizeSpec = 64, progress: bool = True) -> Road:
    r"""ROAD (Rong et al., ICML 2022): the target score after removing p % of the pixels and imputing them.

    .. math:: \mathrm{after}_{i,p} = f_c\big(\mathrm{impute}(x_i, R_{i,p})\big), \qquad
              \mathrm{change}_i = \frac{1}{|P|}\sum_{p \in P} \big(\mathrm{after}_{i,p} - f_c(x_i)\big)

    R_{i,p} holds the round(p · HW / 100) best-ranked pixels of map E_i (``order="morf"``: by
    decreasing E, a faithful map makes the score drop: lower is better) or worst-ranked
    (``order="lerf"``: by increasing E, higher is better); ties go in raster order.
    :func:`linear_imputation` fills them, plus noise σ·ε (``noise`` σ in the units of x, 0.01 as
    the paper's code; [0, 1] pixels for camkit's models), drawn per (image, percentage) row from
    ``seed`` / ``generator`` so results do not depend on ``internal_batch_size``. f_c is the
    softmax probability (``score="prob"``) or the logit. x: (N, C, H, W) in [0, 1]; maps: (N, H, W)
    non-negative; one class per image (``target``: None for top-1, an int or N ints).

    Returns :class:`Road` (removed (S,), after (N, S), before (N,), change (N,)).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be 'morf' (most relevant first) or 'lerf' (least relevant first), got {order!r}")
    values = _check_percentages(percentages)
    noise = check_sigma(noise, "noise")
    check_randomness(seed, generator)
    return _road(model, x, maps, target, order, values, noise, make_generator(seed, generator), score,
                 internal_batch_size, progress)


def _road(model, x, maps, target, order, values, noise, generator, score, internal_batch_size, progress) -> Road:
    if x.ndim != 4:
        raise ValueError(f"ROAD imputes images: x must have shape (N, C, H, W), got {tuple(x.shape)}")
    maps, classes, before = _prepare(model, x, maps, target, score, internal_batch_size, progress)
    rank = _pixel_rank(maps if order == "morf" else -maps)
    steps = len(values)
    pixels = rank.shape[1]
    counts = torch.tensor([round(p * pixels / 100) for p in values], device=x.device)
    seeds = draw_seeds(generator, x.shape[0] * steps) if noise > 0 else None

    def scores(j: Tensor) -> Tensor:
        i, s = j // steps, j % steps
        removed = (rank[i] < counts[s, None]).reshape(-1, *x.shape[-2:])
        imputed = linear_imputation(x[i], removed)
        if seeds is not None:
            draws = per_row([seeds[k] for k in j.tolist()], x.device, lambda g: torch.randn(
                x.shape[1:], generator=g, device=x.device, dtype=torch.float32))
            imputed = torch.where(removed.unsqueeze(1), imputed + noise * draws.to(x.dtype), imputed)
        return _target_scores(model(imputed), classes[i], score)

    after = _batched(scores, x.shape[0] * steps, x.device, internal_batch_size, progress,
                     f"ROAD {order}").reshape(x.shape[0], steps)
    removed = torch.tensor(values, device=x.device)
    return Road(removed, after, before, (after - before[:, None]).mean(1))


def road_combined(model: nn.Module, x: Tensor, maps: Tensor, target: TargetSpec = None, *,
                  percentages: Union[float, Sequence[float]] = ROAD_PERCENTAGES, noise: float = 0.01,
                  seed: Optional[int] = None, generator: Optional[torch.Generator] = None, score: Score = "prob",
                  internal_batch_size: BatchSizeSpec = 64, progress: bool = True) -> Tensor:
    r"""pytorch-grad-cam's ``ROADCombined``, per image (N,): higher is better.

    .. math:: \mathrm{ROAD}_i = \tfrac12\big(\mathrm{change}^{\mathrm{LeRF}}_i - \mathrm{change}^{\mathrm{MoRF}}_i\big)

    with both changes from :func:`road` over the same ``percentages`` (f_c(x) cancels). The MoRF
    rows draw their noise first, then the LeRF rows, from one ``seed`` / ``generator`` stream.
    """
    values = _check_percentages(percentages)
    noise = check_sigma(noise, "noise")
    check_randomness(seed, generator)
    stream = make_generator(seed, generator)
    morf = _road(model, x, maps, target, "morf", values, noise, stream, score, internal_batch_size, progress)
    lerf = _road(model, x, maps, target, "lerf", values, noise, stream, score, internal_batch_size, progress)
    return (lerf.change - morf.change) / 2
