"""Helpers the theory chapters share: small networks and the "common mistakes" of each method.

The chapters derive every method by hand; these functions hold what two chapters would otherwise copy
(:class:`ReluHeadNet`, used by 02 and 03) and the wrong variants the chapters' *common mistakes* boxes
show next to the right map. The variants are the classic errors the classroom checks catch
(``notebooks/assignments/variants.py``), written as formulas on recorded activations and gradients.

>>> net = ReluHeadNet(nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU()), channels=4)
>>> maps = gradcam_variants(A, g)           # {"right": ..., "no ReLU": ..., ...}, each (N, h, w)
>>> fig = mistakes_figure(x, maps, title="Grad-CAM and its common mistakes")
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = ["toy_network", "ReluHeadNet", "scale_head", "gradcam_variants", "gradcampp_variants", "integrated_variants",
           "riemann_variants", "map_distance", "mistakes_figure"]


def toy_network(x: Tensor) -> Tensor:
    """The sensitivity axiom's toy network f(x) = 1 − ReLU(1 − x) = min(x, 1), elementwise: its
    output changes between x' = 0 and x = 2 while its gradient at x = 2 is 0."""
    return 1 - torch.relu(1 - x)


class ReluHeadNet(nn.Module):
    """``features`` (the target layer) → 1×1 conv → ReLU → global average pooling → linear.

    Because of the hidden ReLU the gradient of a class score with respect to the target layer changes
    from position to position (it is the weight of a path through the hidden units that are active
    there), so CAM does not apply and Grad-CAM's average gradient differs from the per-position one;
    the logit stays piecewise linear in the activation. Chapter 02 uses it to show where CAM stops,
    chapter 03 to check Grad-CAM++'s closed form against higher-order autograd.

    Args:
        features: the layers up to and including the target layer (its output has ``channels`` channels).
        channels: K, the channels of the target layer.
        hidden: hidden 1×1-conv units.
        classes: outputs of the linear layer.
    """

    def __init__(self, features: nn.Module, channels: int, hidden: int = 16, classes: int = 3):
        super().__init__()
        self.features = features
        self.hidden = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(hidden, classes)

    def head(self, activation: Tensor) -> Tensor:
        """Logits from the target layer's activation A (the part of the network above the layer)."""
        return self.fc(self.pool(self.hidden(activation)).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def scale_head(net: ReluHeadNet, hidden_scale: float = 3.0, head_scale: float = 30.0) -> ReluHeadNet:
    """Scale the random head in place so that Σ_ab A_ab · g_ij is of order 1.

    With PyTorch's default initialisation the gradients at the target layer are tiny, Σ A · g ≈ 0 and
    every Grad-CAM++ coefficient α = 1 / (2 + Σ A · g) is ≈ ½: a check on such a network cannot tell
    the closed form from "α = ½". Returns ``net``.
    """
    with torch.no_grad():
        net.hidden[0].weight.mul_(hidden_scale)
        net.fc.weight.mul_(head_scale)
    return net


def _weighted(weights: Tensor, activation: Tensor) -> Tensor:
    return (weights[..., None, None] * activation).sum(-3)


def gradcam_variants(activation: Tensor, grads: Tensor) -> dict[str, Tensor]:
    """Grad-CAM and its classic mistakes, raw maps (N, h, w) from A and g = ∂y^c/∂A, both (N, K, h, w).

    * ``right``: ReLU(Σ_k α_k A^k), α_k = mean_ij g^k_ij;
    * ``no ReLU``: the signed sum (negative where the evidence speaks against the class);
    * ``weights summed, not averaged``: α_k · Z (the same map after normalisation, Z times larger raw:
      a check on raw maps catches it, the picture does not);
    * ``g ⊙ A, no average``: the element-wise product (that is HiResCAM, not Grad-CAM);
    * ``gradient averaged over channels``: one weight per position instead of one per channel.
    """
    alpha = grads.mean(dim=(-2, -1))
    return {"right": _weighted(alpha, activation).relu(),
            "no ReLU": _weighted(alpha, activation),
            "weights summed, not averaged": _weighted(grads.sum(dim=(-2, -1)), activation).relu(),
            "g ⊙ A, no average": (grads * activation).sum(-3).relu(),
            "gradient averaged over channels": (grads.mean(dim=-3, keepdim=True) * activation).sum(-3).relu()}


def gradcampp_variants(activation: Tensor, grads: Tensor) -> dict[str, Tensor]:
    """Grad-CAM++ and its classic mistakes, raw maps (N, h, w) from A and g (N, K, h, w).

    * ``right``: w_k = Σ_ij α^k_ij ReLU(g^k_ij), α = g² / (2g² + Σ_ab A_ab g³) (0 where g or the
      denominator is 0);
    * ``α = ½``: the value every α takes when Σ A · g ≈ 0;
    * ``all gradients, not ReLU(g)``: negative gradients enter the weights;
    * ``Σ A over channels``: the sum in α taken over the wrong axis.
    """
    def alpha(total: Tensor) -> Tensor:
        denominator = 2 * grads ** 2 + total * grads ** 3
        usable = (grads != 0) & (denominator != 0)
        return torch.where(usable, grads ** 2 / torch.where(usable, denominator, torch.ones_like(denominator)),
                           torch.zeros_like(grads))

    positions = activation.sum(dim=(-2, -1), keepdim=True)
    right = alpha(positions)
    return {"right": _weighted((right * grads.relu()).sum(dim=(-2, -1)), activation).relu(),
            "α = ½": _weighted((0.5 * (grads != 0) * grads.relu()).sum(dim=(-2, -1)), activation).relu(),
            "all gradients, not ReLU(g)": _weighted((right * grads).sum(dim=(-2, -1)), activation).relu(),
            "Σ A over channels": _weighted((alpha(activation.sum(dim=-3, keepdim=True)) * grads.relu())
                                           .sum(dim=(-2, -1)), activation).relu()}


def integrated_variants(activations: Tensor, grads: Tensor, steps: int) -> dict[str, Tensor]:
    """Integrated Grad-CAM and its classic mistakes from a recorded path.

    ``activations`` and ``grads`` hold A(γ(t_s)) and g(γ(t_s)) at t_s = s / steps, s = 0 … steps
    (shape (steps + 1, K, h, w); index 0 is the baseline). Raw maps (h, w):

    * ``right``: ReLU((1/m) Σ_{s=1..m} Σ_k ᾱ_k(t_s) (A^k(t_s) − A^k(x′))), right Riemann points;
    * ``left Riemann points``: s = 0 … m − 1 (the baseline's gradient in, the image's out);
    * ``A(γ) instead of A(γ) − A(x′)``: the Δ term forgotten, features of the baseline get credit;
    * ``gradient at x only``: Grad-CAM's weights at the image times the total change, no path.
    """
    alpha = grads.mean(dim=(-2, -1))                       # (steps + 1, K)
    delta = activations - activations[:1]
    right = (alpha[1:, :, None, None] * delta[1:]).sum(1).mean(0)
    left = (alpha[:-1, :, None, None] * delta[:-1]).sum(1).mean(0)
    raw = (alpha[1:, :, None, None] * activations[1:]).sum(1).mean(0)
    at_x = (alpha[-1][:, None, None] * delta[-1]).sum(0)
    return {"right": right.relu(), "left Riemann points": left.relu(), "A(γ) instead of A(γ) − A(x′)": raw.relu(),
            "gradient at x only": at_x.relu()}


def riemann_variants(gradient, x: Tensor, baseline: Tensor, steps: int) -> dict[str, Tensor]:
    """Integrated gradients of an element-wise function with the right, left and midpoint Riemann sums, the
    plain gradient × input, and the right sum without the factor (x − x′); ``gradient(points)`` returns f′
    at every entry of a ``(points, *x.shape)`` tensor."""
    def along(t: Tensor) -> Tensor:
        points = baseline + t.reshape(-1, *([1] * x.ndim)) * (x - baseline)
        return (x - baseline) * gradient(points).mean(0)

    k = torch.arange(steps, dtype=x.dtype)
    right = (k + 1) / steps
    points = baseline + right.reshape(-1, *([1] * x.ndim)) * (x - baseline)
    return {"right (t = k/m, k = 1..m)": along(right), "left (t = k/m, k = 0..m−1)": along(k / steps),
            "midpoint": along((k + 0.5) / steps), "gradient × input": (x - baseline) * gradient(x[None])[0],
            "(x − x′) forgotten": gradient(points).mean(0)}


def map_distance(maps: Mapping[str, Tensor], reference: str = "right") -> dict[str, float]:
    """Root-mean-square difference of every map from ``maps[reference]`` after min-max normalising both to
    [0, 1] (what a reader sees): 0 for the same picture, up to 1; a constant map normalises to 0."""
    def unit(m: Tensor) -> Tensor:
        m = m.double().flatten()
        return (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12)

    right = unit(maps[reference])
    return {name: float((unit(m) - right).pow(2).mean().sqrt()) for name, m in maps.items()}


def mistakes_figure(x: Tensor, maps: Mapping[str, Tensor], *, row_labels: Optional[Sequence[str]] = None,
                    title: str = "", cell_size: float = 2.0, raw: bool = False):
    """The right map and its mistakes side by side (rows: images), each upsampled to the image and min-max
    normalised; a mistake's column title gives its largest distance to the right map over the rows."""
    import textwrap

    from ..methods.base import normalize_maps, upsample_maps
    from .viz import show_grid

    rows = {k: v.reshape(-1, *v.shape[-2:]) for k, v in maps.items()}
    distance = {name: max(map_distance({k: v[i] for k, v in rows.items()})[name] for i in range(len(x)))
                for name in rows}
    shown = {}
    for name, m in rows.items():
        up = normalize_maps(upsample_maps(m[:, None].float().cpu(), x.shape[-2:]))[:, 0]
        wrapped = "\n".join(textwrap.wrap(name, 18))
        label = wrapped if name == "right" else f"{wrapped}\n(distance ≤ {distance[name]:.2f})"
        shown[label] = up
    return show_grid(x.cpu(), shown, row_labels=row_labels, title=title, cell_size=cell_size, raw=raw)
