"""Class Activation Mapping for networks with a global-average-pooling + linear head."""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import Tensor, nn

from ..common import row_chunks
from .base import BaseCAM, Targets, register, spatial_dims, weighted_sum
from .layers import LayerSpec, resolve_layer

#: Largest relative difference between the model's logits and W·GAP(A) + b accepted as "GAP-linear"
#: (4 machine epsilons of the logits' dtype where that is larger: 3e-2 for bfloat16, 4e-3 for float16).
GAP_LINEAR_RTOL = 1e-4


@register("cam", "CAM")
class CAM(BaseCAM):
    r"""CAM (Zhou et al., CVPR 2016, https://arxiv.org/abs/1512.04150).

    For a head y^c = Σ_k w^c_k · (1/Z) Σ_ij A^k_ij + b^c the class activation map is

    .. math:: M^c = \sum_k w^c_k A^k \qquad (\textstyle\sum_{ij} M^c_{ij} = Z\,(y^c - b^c))

    No gradients are needed. The classifier is found as the last ``nn.Linear`` whose input size
    equals the layer's channel count, or given by ``classifier=`` (name or module) or by
    ``weights=`` (classes, C). Every call checks that the logits really equal W·GAP(A) + b
    (relative error ≤ 1e-4) and raises ``ValueError`` otherwise: CAM does not apply to that
    model at that layer (use Grad-CAM, which generalises it). ``relu=False`` by default, as in
    the formula; the CAM map is signed.
    """

    relu_default = False

    needs_gradients = False

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *,
                 classifier: Union[str, nn.Linear, None] = None, weights: Optional[Tensor] = None,
                 bias: Optional[Tensor] = None, **options):
        super().__init__(model, layer, **options)
        if classifier is not None and weights is not None:
            raise ValueError("give classifier= or weights=, not both")
        self._classifier = None if classifier is None else resolve_layer(model, classifier)[1]
        if self._classifier is not None and not isinstance(self._classifier, nn.Linear):
            raise ValueError(f"classifier must be an nn.Linear, got {type(self._classifier).__name__}")
        self._weights, self._bias = weights, bias

    def classifier_weights(self, channels: int) -> tuple[Tensor, Optional[Tensor]]:
        """The (classes, C) weights W and bias b of the linear head that follows GAP."""
        if self._weights is not None:
            if self._weights.ndim != 2 or self._weights.shape[1] != channels:
                raise ValueError(f"weights must have shape (classes, {channels}), got {tuple(self._weights.shape)}")
            return self._weights, self._bias
        linear = self._classifier
        if linear is None:
            matches = [m for m in self.model.modules() if isinstance(m, nn.Linear) and m.in_features == channels]
            if not matches:
                raise ValueError(f"CAM needs a GAP + linear head: no nn.Linear with {channels} inputs follows "
                                 f"layer {self.layer_name!r}; use Grad-CAM, or pass weights=")
            linear = matches[-1]
        if linear.in_features != channels:
            raise ValueError(f"classifier has {linear.in_features} inputs but layer {self.layer_name!r} has "
                             f"{channels} channels")
        return linear.weight, linear.bias

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        layer = self.target_layer(x)
        maps = []
        for rows in row_chunks(x.shape[0], self.rows_per_pass(x.device)):
            with torch.no_grad(), self.capture(layer, detach_below=False) as capture:
                logits = self.forward(x[rows])
                activation = capture.get().float()
            weights, bias = self.classifier_weights(activation.shape[1])
            weights = weights.detach().float()
            self._check_gap_linear(activation, weights, bias, logits)
            index = targets.indices(logits, rows)
            maps.append(weighted_sum(weights[index], activation))
        return torch.cat(maps)

    def _check_gap_linear(self, activation: Tensor, weights: Tensor, bias: Optional[Tensor], logits: Tensor) -> None:
        expected = activation.mean(dim=spatial_dims(activation, 2)) @ weights.T
        if bias is not None:
            expected = expected + bias.detach().float()
        if logits.ndim != 2 or logits.shape != expected.shape:
            raise ValueError(f"CAM needs a GAP + linear head after layer {self.layer_name!r}: the model returns "
                             f"{tuple(logits.shape)}, W·GAP(A) gives {tuple(expected.shape)}; use Grad-CAM")
        error = (logits.float() - expected).abs().max() / logits.float().abs().max().clamp_min(1e-12)
        tolerance = max(GAP_LINEAR_RTOL, 4 * torch.finfo(logits.dtype).eps)  # float16 / bfloat16 logits round
        if error > tolerance:
            raise ValueError(f"CAM needs a GAP + linear head after layer {self.layer_name!r}, but the logits differ "
                             f"from W·GAP(A) + b by a relative {error.item():.2e} (> {tolerance:g}); "
                             "use Grad-CAM, which generalises CAM, or choose the last feature layer")
