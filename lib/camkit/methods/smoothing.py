r"""Smoothing options of pytorch-grad-cam, for every camkit method: ``eigen_smooth`` and ``aug_smooth``.

Notation: a map is a sum of per-channel terms, :math:`M = \sum_k T^k` (Grad-CAM: T^k = α_k A^k;
HiResCAM: T^k = g^k ⊙ A^k; Score-CAM and Ablation-CAM: T^k = w_k A^k). Stacked as the rows of a
(hw × C) matrix T (one row per position, one column per channel):

* :func:`eigen_smooth` replaces M by the first principal component of T,
  :math:`\tilde M = (T - \mathbf 1\bar t^\top)\, v_1`, v₁ the first right singular vector of the
  centred T (:func:`principal_projection`);
* :func:`aug_smooth` averages the maps of augmented copies of the image (horizontal flips and
  intensity factors), each map un-augmented (flipped back) before the average.

>>> cam = camkit.GradCAM(model, "layer4")
>>> maps = smoothing.eigen_smooth(cam, x)                 # (N, H, W) in [0, 1]
>>> maps = smoothing.aug_smooth(cam, x, eigen_smooth=True)  # both, as pytorch-grad-cam's flags
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..common import row_chunks
from .base import BaseCAM, GradientCAM, Targets, TargetSpec, check_images

#: pytorch-grad-cam's test-time augmentations: every combination of a horizontal flip (or none)
#: and an intensity factor.
FLIPS = (False, True)
FACTORS = (0.9, 1.0, 1.1)


def principal_projection(terms: Tensor, spatial_ndim: int = 2, *, center: bool = True) -> Tensor:
    r"""The first principal component of per-channel terms: ``(…, C, *spatial)`` → ``(…, *spatial)``.

    ``spatial_ndim`` trailing dims are positions (2 for images, 3 for volumes), the one before them
    channels. Each (…) slice is read as the matrix T (positions × C); the result is
    :math:`(T - \mathbf 1 \bar t^\top) v_1` (``center=False``: :math:`T v_1`, the uncentred SVD), v₁
    the first right singular vector. SVD fixes v₁ only up to sign; camkit takes the sign with
    :math:`\sum_k v_{1,k} \ge 0`, which (centred) is the same as a non-negative inner product of the
    projection with :math:`\sum_k T^k`: the component points the way the channel sum does.
    An all-zero (or, centred, spatially constant) T gives an all-zero map.
    """
    lead, channels = terms.shape[:-spatial_ndim - 1], terms.shape[-spatial_ndim - 1]
    spatial = terms.shape[-spatial_ndim:]
    matrix = terms.float().reshape(-1, channels, spatial.numel()).transpose(1, 2)  # (B, positions, C)
    if center:
        matrix = matrix - matrix.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    v = vh[:, 0, :]  # (B, C)
    v = torch.where(v.sum(-1, keepdim=True) < 0, -v, v)
    return (matrix @ v.unsqueeze(-1)).reshape(*lead, *spatial)


# --------------------------------------------------------------------------- per-channel terms

def channel_terms(cam: BaseCAM, x: Tensor, targets: Targets) -> Tensor:
    """The per-channel terms T ``(N, K, C, *spatial)`` whose sum over C is ``cam``'s raw map.

    A method that defines ``channel_terms(x, targets)`` gives them itself (Score-CAM, SS-CAM,
    IS-CAM, Ablation-CAM). For the single-pass gradient methods (Grad-CAM, Grad-CAM++, XGrad-CAM,
    Layer-CAM, HiResCAM) T^k is what ``combine`` returns for channel k alone: each of them builds
    T^k from A^k and g^k only, so ``combine`` runs once with the channels moved into the batch.
    Other methods raise ``ValueError``: their maps are not a sum of per-channel terms of one
    activation (the path and sampled methods average maps over many inputs, Grad-CAM++'s smooth
    variant averages gradient moments, CAM reads the classifier: use Grad-CAM, equal on GAP heads).
    """
    own = getattr(cam, "channel_terms", None)
    if callable(own):
        return own(x, targets).float()
    if isinstance(cam, GradientCAM) and type(cam).compute is GradientCAM.compute:
        terms = []
        for rows in row_chunks(x.shape[0], cam.rows_per_pass(x.device)):
            activation, grads, _ = cam.activations_and_gradients(x[rows], targets, rows)
            terms.append(per_channel_combine(cam, activation.float(), grads.float()))
        return torch.cat(terms)
    raise ValueError(f"eigen smoothing needs a map that is a sum of per-channel terms of one activation; "
                     f"{type(cam).__name__} does not build its map that way (supported: the single-pass gradient "
                     "methods, Score-CAM, SS-CAM, IS-CAM, Ablation-CAM)")


def per_channel_combine(cam: GradientCAM, activation: Tensor, grads: Tensor) -> Tensor:
    """T ``(B, K, C, *spatial)``: ``cam.combine`` of each channel alone, channels moved into the batch."""
    b, c = activation.shape[:2]
    k, spatial = grads.shape[1], activation.shape[2:]
    alone_a = activation.reshape(b * c, 1, *spatial)
    alone_g = grads.transpose(1, 2).reshape(b * c, k, 1, *spatial)
    return cam.combine(alone_a, alone_g).reshape(b, c, k, *spatial).transpose(1, 2)


# --------------------------------------------------------------------------- the two options

def eigen_smooth(cam: BaseCAM, x: Tensor, target: TargetSpec = None, *, normalize: bool = True,
                 upsample: bool = True) -> Tensor:
    r"""``cam``'s maps with eigen smoothing (pytorch-grad-cam's ``eigen_smooth=True``).

    .. math:: \tilde M = \big(T - \mathbf 1 \bar t^\top\big)\, v_1, \qquad M = \sum_k T^k

    the projection of the per-channel terms on their first principal direction
    (:func:`principal_projection`, sign: :math:`\langle \tilde M, M\rangle \ge 0`), then the method's
    ReLU (when its ``relu`` is set), upsampling and normalisation. Same arguments and output as
    calling ``cam``.

    >>> maps = eigen_smooth(camkit.GradCAM(model, "layer4"), x, target=281)
    """
    check_images(x, cam.model)
    if len(getattr(cam, "layers", [])) > 1:
        raise ValueError("eigen_smooth works on one layer at a time; call it once per layer and fuse the maps")
    targets = Targets.parse(target, x.shape[0], x.device)
    terms = channel_terms(cam, x, targets)
    maps = principal_projection(terms, x.ndim - 2)
    maps = maps.relu() if cam.relu else maps
    maps = cam.finish(maps, x, normalize=normalize, upsample=upsample)
    squeeze = targets.squeeze if not targets.callable else maps.shape[1] == 1
    return maps[:, 0] if squeeze else maps


def aug_smooth(cam: BaseCAM, x: Tensor, target: TargetSpec = None, *, flips: Sequence[bool] = FLIPS,
               factors: Sequence[float] = FACTORS, eigen_smooth: bool = False, normalize: bool = True,
               upsample: bool = True) -> Tensor:
    r"""``cam``'s maps averaged over test-time augmentations (pytorch-grad-cam's ``aug_smooth=True``).

    .. math:: \bar M = \frac{1}{|F||S|}\sum_{f \in F}\sum_{s \in S} f^{-1}\big(M(f(s\,x))\big)

    F the flips (identity and horizontal flip by default), S the intensity factors (0.9, 1, 1.1),
    f⁻¹ flips the map back. Each map is the method's usual output (normalised when ``normalize``);
    the mean is normalised again with the method's own normalisation, so it spans [0, 1]
    (pytorch-grad-cam returns the mean of the normalised maps without that last step). The
    targets are fixed on the clean image first (top-1 of ``x`` when ``target=None``; pytorch-grad-cam
    takes the top-1 class of each augmented copy). A callable target sees the augmented copy's
    output as it is (a segmentation mask is not flipped for it). ``eigen_smooth=True`` smooths each
    map with :func:`eigen_smooth`. Intensity factors apply in the model's input space ([0, 1]
    pixels for camkit's models; a factor above 1 may leave [0, 1]).

    >>> maps = aug_smooth(camkit.GradCAM(model, "layer4"), x)
    """
    check_images(x, cam.model)
    flips, factors = tuple(flips), tuple(factors)
    if not flips or not all(isinstance(f, bool) for f in flips):
        raise ValueError(f"flips must be a non-empty sequence of booleans (False: as is, True: flipped), got {flips!r}")
    if not factors or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in factors):
        raise ValueError(f"factors must be a non-empty sequence of positive numbers, got {factors!r}")
    targets = Targets.parse(target, x.shape[0], x.device)
    if targets.index is None and not targets.callable:
        target = cam.fix_targets(x, targets).index[:, 0]
    total = None
    for flip in flips:
        for factor in factors:
            augmented = x * factor
            if flip:
                augmented = augmented.flip(-1)
            if eigen_smooth:
                maps = _eigen_smooth(cam, augmented, target, normalize=normalize, upsample=upsample)
            else:
                maps = cam(augmented, target, normalize=normalize, upsample=upsample)
            maps = maps.flip(-1) if flip else maps
            total = maps if total is None else total + maps
    mean = total / (len(flips) * len(factors))
    if not normalize:
        return mean
    squeezed = mean.ndim == x.ndim - 1
    mean = mean.unsqueeze(1) if squeezed else mean
    mean = cam.finish(mean, x, normalize=True, upsample=False)
    return mean[:, 0] if squeezed else mean


_eigen_smooth = eigen_smooth  # aug_smooth's flag of the same name hides the function
