r"""Eigen-CAM and Eigen-Grad-CAM: the first principal component of the layer's (weighted) activations.

Notation: A (C, h, w) read as the (hw × C) matrix with one row per position, :math:`\tilde A`
its columns centred, v₁ the first right singular vector; the sign of v₁ is fixed by
:func:`camkit.methods.smoothing.principal_projection` (:math:`\sum_k v_{1,k} \ge 0`).
"""
from __future__ import annotations

from torch import Tensor, nn

from .base import BaseCAM, GradientCAM, Targets, register
from .layers import LayerSpec
from .smoothing import principal_projection


@register("eigencam", "Eigen-CAM")
class EigenCAM(BaseCAM):
    r"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020, https://arxiv.org/abs/2008.00299). Gradient-free and
    class-agnostic: every target of an image gets the same map.

    .. math:: M = \tilde A\, v_1, \qquad \tilde A = A - \mathbf 1 \bar a^\top, \qquad
              \tilde A = U \Sigma V^\top,\ v_1 = V_{:,1}

    As pytorch-grad-cam, the activations are centred before the SVD (``center=False``: the SVD of A
    itself). SVD leaves the sign of v₁ open (pytorch-grad-cam keeps whatever LAPACK returns);
    camkit takes :math:`\sum_k v_{1,k} \ge 0`, i.e. the map correlates positively with
    :math:`\sum_k A^k`. No ReLU by default, as in the paper (pytorch-grad-cam applies one:
    ``relu=True`` reproduces it).

    >>> cam = EigenCAM(model, layer="layer4")
    >>> maps = cam(x)                          # (N, H, W) in [0, 1]
    >>> raw = cam(x, normalize=False, upsample=False)

    Args:
        center: centre the channels over positions before the SVD (default True).
    """

    relu_default = False
    needs_gradients = False

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, center: bool = True, **options):
        super().__init__(model, layer, **options)
        self.center = bool(center)

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        activation, scores = self.layer_outputs(x, targets)  # the scores check the targets and give K
        maps = principal_projection(activation, activation.ndim - 2, center=self.center)
        return maps.unsqueeze(1).expand(-1, scores.shape[1], *maps.shape[1:])


@register("eigengradcam", "Eigen-Grad-CAM")
class EigenGradCAM(GradientCAM):
    r"""Eigen-Grad-CAM (pytorch-grad-cam's ``EigenGradCAM``): Eigen-CAM of the gradient-weighted
    activations, so the map depends on the target.

    .. math:: T^k = g^k \odot A^k, \qquad M = \tilde T\, v_1

    with T centred over positions and v₁ its first right singular vector, signed so that M
    correlates positively with :math:`\sum_k T^k` (the HiResCAM map). No ReLU by default, like
    :class:`EigenCAM` (pytorch-grad-cam applies one: ``relu=True``).

    >>> cam = EigenGradCAM(model, layer="layer4")
    >>> maps = cam(x, target=torch.tensor([[281, 282]] * len(x)))   # (N, 2, H, W)

    Args:
        center: centre the terms over positions before the SVD (default True).
    """

    relu_default = False

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, center: bool = True, **options):
        super().__init__(model, layer, **options)
        self.center = bool(center)

    def combine(self, activation: Tensor, grads: Tensor) -> Tensor:
        return principal_projection(grads * activation.unsqueeze(1), activation.ndim - 2, center=self.center)
