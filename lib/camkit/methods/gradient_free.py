"""Gradient-free CAMs: Score-CAM."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ..common import check_choice, check_positive_int, check_sigma, renamed_keywords
from ..transforms import BaselineSpec, make_baseline
from .base import BaseCAM, BatchSizeSpec, Targets, TargetSpec, check_images, normalize_maps, register, upsample_maps
from .layers import LayerSpec
from .sampled import BLUR_SIGMA, INTERNAL_BATCH_SIZE, check_baseline, expanded_rows

#: What a masked input is scored by: the softmax probability of the class or its logit.
SCORES = ("prob", "logit")

# --------------------------------------------------------------------------- Score-CAM

@register("scorecam", "Score-CAM")
class ScoreCAM(BaseCAM):
    r"""Score-CAM (Wang et al., CVPR-W 2020, https://arxiv.org/abs/1910.01279). Gradient-free.

    Each map, upsampled and min-max normalised, :math:`H^k = \mathrm{norm}(\mathrm{up}(A^k))`,
    reveals the input over the baseline; the gain of the class score weights the map:

    .. math:: w_k = s^c\big(x' + H^k \odot (x - x')\big) - s^c(x'),
              \qquad M = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    s^c is the softmax probability of class c (``score="prob"``, default; a callable target then
    receives probabilities) or the logit (``score="logit"``). With the black baseline the masked
    input is x ⊙ H^k, as in the paper. A constant channel gets H^k = 0, hence w_k = 0.
    (torchcam and pytorch-grad-cam instead weight by softmax_k of the logits over channels.)

    >>> cam = ScoreCAM(model, layer="layer4", internal_batch_size=64)
    >>> maps = cam(x)                          # (N, H, W) in [0, 1]
    >>> w = cam.score_weights(x)               # (N, C) channel weights

    Args:
        baseline: x′ as in :class:`IntegratedGradCAM` (default "black").
        score: score masked inputs by probability ("prob", default) or by logit ("logit");
            ``softmax=True/False`` is the old spelling.
        max_channels: keep only the channels with the largest mean activation (per image); the
            others get w_k = 0. None (default) scores every channel.
        internal_batch_size: masked inputs per forward pass (default "auto"; None: all).
    """

    @renamed_keywords(softmax="score")
    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, baseline: BaselineSpec = "black",
                 score: str = "prob", max_channels: Optional[int] = None, blur_sigma: float = BLUR_SIGMA,
                 relu: Optional[bool] = None, internal_batch_size: BatchSizeSpec = INTERNAL_BATCH_SIZE,
                 reshape: Optional[Callable[[Tensor], Tensor]] = None):
        super().__init__(model, layer, relu=relu, internal_batch_size=internal_batch_size, reshape=reshape)
        self.baseline = check_baseline(baseline)
        if isinstance(score, bool):  # the old softmax=True / False
            score = "prob" if score else "logit"
        self.score_kind = check_choice(score, SCORES, "score", tensor_ok=False)
        self.max_channels = check_positive_int(max_channels, "max_channels", allow_none=True)
        self.blur_sigma = check_sigma(blur_sigma, "blur_sigma")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(layer={self.layer_name!r}, score={self.score_kind!r}, "
                f"max_channels={self.max_channels}, relu={self.relu})")

    def score(self, logits: Tensor) -> Tensor:
        """What a masked input is scored by: class probabilities or the logits themselves."""
        return logits.softmax(dim=1) if self.score_kind == "prob" else logits

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
        activation = self.layer_outputs(x)[0]
        base_scores = self.layer_outputs(baseline, targets, self.score)[1].float()
        n, channels = activation.shape[:2]
        kept = channels if self.max_channels is None else min(self.max_channels, channels)
        order = activation.mean(dim=(-2, -1)).topk(kept, dim=1).indices  # (N, kept)
        expanded = targets.repeat_interleave(kept)
        weights = base_scores.new_zeros(n, base_scores.shape[1], channels)
        for rows, image, position in expanded_rows(n, kept, self.rows_per_pass(x.device), x.device):
            channel = order[image, position]
            masks = normalize_maps(upsample_maps(activation[image, channel].unsqueeze(1), x.shape[-2:]))
            masked = torch.lerp(baseline[image], x[image], masks.to(x.dtype))
            with torch.no_grad():
                scores = expanded.scores(self.score(self.model(masked)), rows).float()
            weights[image, :, channel] = scores - base_scores[image]
        return activation, weights

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        activation, weights = self.activations_and_weights(x, targets)
        return torch.einsum("nkc,nchw->nkhw", weights, activation)
