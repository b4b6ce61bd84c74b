"""Single-pass gradient CAMs: Grad-CAM, Grad-CAM++, XGrad-CAM, Layer-CAM, HiResCAM.

Notation (the same as the notebooks): A^k_ij is channel k of the target layer at position (i, j),
g^k_ij = ∂y^c/∂A^k_ij the gradient of the class score y^c (the logit, before softmax), Z = h·w.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .base import GradientCAM, register, spatial_dims


@register("gradcam", "Grad-CAM")
class GradCAM(GradientCAM):
    r"""Grad-CAM (Selvaraju et al., ICCV 2017, https://arxiv.org/abs/1610.02391).

    .. math:: \alpha_k = \frac{1}{Z}\sum_{ij} g^k_{ij}, \qquad M = \mathrm{ReLU}\Big(\sum_k \alpha_k A^k\Big)

    >>> cam = GradCAM(model, layer="layer4")
    >>> maps = cam(x)            # (N, H, W) in [0, 1]
    """

    def channel_weights(self, activation: Tensor, grads: Tensor) -> Tensor:
        return grads.mean(dim=spatial_dims(grads, 3))


@register("gradcam++", "Grad-CAM++")
class GradCAMPlusPlus(GradientCAM):
    r"""Grad-CAM++ (Chattopadhay et al., WACV 2018, https://arxiv.org/abs/1710.11063), Eq. 19.

    With the exponential trick (the explained score is Y = exp(S), S the logit) the second and
    third derivatives of Y become powers of the first-order gradient g = ∂S/∂A:

    .. math:: \alpha^k_{ij} = \frac{(g^k_{ij})^2}{2 (g^k_{ij})^2 + \sum_{ab} A^k_{ab}\,(g^k_{ij})^3},
              \qquad w_k = \sum_{ij} \alpha^k_{ij}\,\mathrm{ReLU}(g^k_{ij}),
              \qquad M = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    α = 0 where g = 0 (and where the denominator vanishes). The common factor exp(S) of
    ∂Y/∂A is dropped: it is positive and one number per map, so it cancels in normalisation.
    """

    def channel_weights(self, activation: Tensor, grads: Tensor) -> Tensor:
        return (gradcampp_alpha(activation, grads) * grads.relu()).sum(dim=spatial_dims(grads, 3))


def gradcampp_alpha(activation: Tensor, grads: Tensor, g3: Optional[Tensor] = None) -> Tensor:
    r"""Grad-CAM++ coefficients α (B, K, C, h, w) of Eq. 19 from A (B, C, h, w) and g (B, K, C, h, w).

    .. math:: \alpha^k_{ij} = \frac{G_2}{2 G_2 + \sum_{ab} A^k_{ab}\, G_3}

    with G₂ = g², G₃ = g³; or, given ``g3``, with ``grads`` read as the second moment G₂ and ``g3`` as
    G₃ (Smooth Grad-CAM++ averages the powers over noisy copies). α = 0 where G₂ = 0 or the
    denominator vanishes.
    """
    g2, g3 = (grads.pow(2), grads.pow(3)) if g3 is None else (grads, g3)
    total = activation.sum(dim=spatial_dims(activation, 2), keepdim=True).unsqueeze(1)
    denominator = 2 * g2 + total * g3
    usable = (g2 != 0) & (denominator != 0)
    return torch.where(usable, g2 / torch.where(usable, denominator, torch.ones_like(denominator)),
                       torch.zeros_like(g2))


@register("xgradcam", "XGrad-CAM")
class XGradCAM(GradientCAM):
    r"""XGrad-CAM (Fu et al., BMVC 2020, https://arxiv.org/abs/2008.02312).

    .. math:: w_k = \sum_{ij} \frac{A^k_{ij}}{\sum_{ab} A^k_{ab}}\, g^k_{ij},
              \qquad M = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    A channel whose activations sum to zero gets weight 0.
    """

    def channel_weights(self, activation: Tensor, grads: Tensor) -> Tensor:
        total = activation.sum(dim=spatial_dims(activation, 2), keepdim=True)
        share = torch.where(total != 0, activation / torch.where(total != 0, total, torch.ones_like(total)),
                            torch.zeros_like(activation))
        return (share.unsqueeze(1) * grads).sum(dim=spatial_dims(grads, 3))


@register("layercam", "Layer-CAM")
class LayerCAM(GradientCAM):
    r"""Layer-CAM (Jiang et al., IEEE TIP 2021): positive gradients weight each position.

    .. math:: M = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}(g^k) \odot A^k\Big)
    """

    def combine(self, activation: Tensor, grads: Tensor) -> Tensor:
        return (grads.relu() * activation.unsqueeze(1)).sum(dim=2)


@register("hirescam", "HiResCAM")
class HiResCAM(GradientCAM):
    r"""HiResCAM (Draelos & Carin 2020, https://arxiv.org/abs/2011.08891): element-wise g ⊙ A.

    .. math:: M = \sum_k g^k \odot A^k

    Without ReLU the map is signed and sums to the first-order change of y^c (its Σ_ij equals
    Z · Σ_k α_k Σ_ij A^k only for GAP heads). ``relu=True`` (default, as in pytorch-grad-cam)
    keeps the positive evidence; pass ``relu=False`` for the signed map.
    """

    def combine(self, activation: Tensor, grads: Tensor) -> Tensor:
        return (grads * activation.unsqueeze(1)).sum(dim=2)
