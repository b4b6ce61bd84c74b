r"""Ablation-CAM: channel weights from the score drop when the channel is zeroed."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import Tensor, nn

from ..common import check_choice, check_positive_int
from .base import AUTO, BaseCAM, BatchSizeSpec, Targets, register
from .gradient_free import SCORES
from .layers import LayerSpec
from .sampled import expanded_rows

#: ``|y^c|`` below which Ablation-CAM divides the drops by 1 instead (a positive scale cancels in normalisation).
SCORE_EPS = 1e-12


@register("ablationcam", "Ablation-CAM")
class AblationCAM(BaseCAM):
    r"""Ablation-CAM (Desai & Ramaswamy, WACV 2020,
    https://openaccess.thecvf.com/content_WACV_2020/papers/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.pdf).
    Gradient-free: y^c_k is the class score with channel k of the layer set to zero.

    .. math:: w_k = \frac{y^c - y^c_k}{|y^c|}, \qquad M = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    The paper (and pytorch-grad-cam) divide by y^c itself. For y^c > 0 that is the same; for a
    negative score it flips the sign of every weight, so the ReLU then keeps the regions whose
    ablation *raises* the score. camkit divides by ``|y^c|``, keeping the sign of the drop (a positive
    scale per map, which normalisation removes). pytorch-grad-cam also replaces a channel by
    min(A) − 10⁷ instead of 0 when the layer has negative values; camkit always zeroes, as the paper.

    Each ablated pass is a full forward of the image with a hook that zeroes the channel at the
    layer's output (the network below the layer cannot be skipped for an arbitrary model); passes
    are batched over images, channels and targets in chunks of ``internal_batch_size``.

    >>> cam = AblationCAM(model, layer="layer4", internal_batch_size=64)
    >>> maps = cam(x)                          # (N, H, W) in [0, 1]
    >>> w = cam.ablation_weights(x, torch.tensor([281] * len(x)))[1]   # (N, 1, C)

    Args:
        score: what is ablated: the logit ("logit", default, the paper's y^c) or the softmax
            probability ("prob").
        max_channels: ablate only the channels with the largest mean activation (per image); the
            others get w_k = 0 (pytorch-grad-cam's ``ratio_channels_to_ablate`` picks them by an
            Eigen-CAM mask instead). None (default): every channel.
        internal_batch_size: ablated inputs per forward pass (default "auto"; None: all at once).
    """

    needs_gradients = False

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, score: str = "logit",
                 max_channels: Optional[int] = None, internal_batch_size: BatchSizeSpec = AUTO, **options):
        super().__init__(model, layer, internal_batch_size=internal_batch_size, **options)
        self.score_kind = check_choice(score, SCORES, "score", tensor_ok=False)
        self.max_channels = check_positive_int(max_channels, "max_channels", allow_none=True)

    def score(self, output: Tensor) -> Tensor:
        return output.softmax(dim=1) if self.score_kind == "prob" else output

    @contextmanager
    def ablate(self, layer: nn.Module, channels: Tensor) -> Iterator[None]:
        """Zero channel ``channels[i]`` of row i of the layer's output A (its input with
        ``layer_input=True``) during the forward passes run inside this block.

        With ``reshape`` (which only selects and rearranges entries) the entries of the layer's own
        output that make up A^k are found by passing their flat indices through ``reshape``.
        """
        calls = []

        def zero(output: Tensor) -> Tensor:
            calls.append(1)
            if len(calls) > 1:
                raise ValueError(f"layer {self.layer_name!r} runs more than once per forward pass (a shared "
                                 "module); pick a layer that runs once")
            if self.reshape is None:
                return output.masked_fill(_one_hot(channels, output), 0)
            where = self.reshape(torch.arange(output.numel(), device=output.device).reshape(output.shape))
            rows = torch.arange(where.shape[0], device=output.device)
            ablated = output.flatten().clone()
            ablated[where[rows, channels].flatten()] = 0
            return ablated.view_as(output)

        if self.layer_input:
            handle = layer.register_forward_pre_hook(lambda module, inputs: (zero(inputs[0]), *inputs[1:]))
        else:
            handle = layer.register_forward_hook(lambda module, inputs, output: zero(output))
        try:
            yield
        finally:
            handle.remove()

    def ablation_weights(self, x: Tensor, targets: Targets) -> tuple[Tensor, Tensor]:
        """A (N, C, h, w) and the weights w (N, K, C)."""
        layer = self.target_layer(x)
        targets = self.fix_targets(x, targets)
        activation, base = self.layer_outputs(x, targets, self.score)
        base = base.float()
        n, channels = activation.shape[:2]
        kept = channels if self.max_channels is None else min(self.max_channels, channels)
        order = activation.mean(dim=tuple(range(2, activation.ndim))).topk(kept, dim=1).indices
        expanded = targets.repeat_interleave(kept)
        weights = base.new_zeros(n, base.shape[1], channels)
        scale = torch.where(base.abs() > SCORE_EPS, base.abs(), torch.ones_like(base))
        for rows, image, position in expanded_rows(n, kept, self.rows_per_pass(x.device), x.device):
            channel = order[image, position]
            with torch.no_grad(), self.ablate(layer, channel):
                scores = expanded.scores(self.score(self.forward(x[image])), rows).float()
            weights[image, :, channel] = (base[image] - scores) / scale[image]
        return activation, weights

    def channel_terms(self, x: Tensor, targets: Targets) -> Tensor:
        """The per-channel terms w_k A^k (N, K, C, h, w) (for :func:`~camkit.methods.smoothing.eigen_smooth`)."""
        activation, weights = self.ablation_weights(x, targets)
        return weights.reshape(*weights.shape, *([1] * (activation.ndim - 2))) * activation.unsqueeze(1)

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        activation, weights = self.ablation_weights(x, targets)
        return torch.einsum("nkc,nc...->nk...", weights, activation)


def _one_hot(channels: Tensor, like: Tensor) -> Tensor:
    """(B, C, 1, …) boolean mask of channel ``channels[b]`` for each row b of ``like`` (B, C, …)."""
    mask = torch.zeros(like.shape[:2], dtype=torch.bool, device=like.device)
    mask[torch.arange(like.shape[0], device=like.device), channels] = True
    return mask.reshape(*like.shape[:2], *([1] * (like.ndim - 2)))
