r"""Gradient-free CAMs that score masked inputs: Score-CAM, SS-CAM, IS-CAM.

Notation: :math:`H^k = \mathrm{norm}(\mathrm{up}(A^k))` is channel k upsampled to the input and
min-max normalised, x′ the baseline, s^c the score of class c (probability or logit) and
:math:`x' + H \odot (x - x')` the input x revealed through a mask H over the baseline.
All three weight channel k by the score gain of masked inputs, averaged over R masked inputs
per channel (R = 1 for Score-CAM, the noisy masks of SS-CAM, the path points of IS-CAM):

.. math:: w_k = \frac1R\sum_{r=1}^{R} \Big[s^c\big(x' + H^k_r \odot (x - x')\big) - s^c(x')\Big],
          \qquad M = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

``weighting="softmax"`` replaces w by softmax_k(w) over the scored channels, as torchcam and
pytorch-grad-cam do (with ``score="logit"`` it reproduces their maps). :class:`ScoreCAM` owns the
loop (rows = image × channel × r, in chunks of ``internal_batch_size``); a variant overrides
:meth:`ScoreCAM.masked_inputs` and :meth:`ScoreCAM.repeats`.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
from torch import Tensor, nn

from ..common import (check_choice, check_positive_int, check_randomness, check_sigma, draw_seeds, make_generator,
                      per_row, renamed_keywords)
from ..transforms import BaselineSpec, make_baseline
from .base import BaseCAM, BatchSizeSpec, Targets, TargetSpec, check_images, normalize_maps, register, upsample_maps
from .layers import LayerSpec
from .sampled import BLUR_SIGMA, INTERNAL_BATCH_SIZE, check_baseline, expanded_rows

#: What a masked input is scored by: the softmax probability of the class or its logit.
SCORES = ("prob", "logit")
#: How score gains become channel weights: the gains themselves, or their softmax over channels (the peers).
WEIGHTINGS = ("gain", "softmax")
#: Readings of IS-CAM's masked inputs.
ISCAM_VARIANTS = ("path", "cumulative")


class MaskedRows(NamedTuple):
    """Where the rows of one chunk of masked inputs come from (B rows)."""

    rows: slice      #: the chunk's slice of all N · kept · R rows (to index per-row draws)
    image: Tensor    #: (B,) image of each row
    channel: Tensor  #: (B,) channel k whose mask H^k the row uses
    r: Tensor        #: (B,) position of the row among the R masked inputs of its channel

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
    torchcam and pytorch-grad-cam weight by :math:`\mathrm{softmax}_k` of the masked logits:
    ``ScoreCAM(model, layer, score="logit", weighting="softmax")`` reproduces them (the softmax
    ignores a shift common to all k, so subtracting s^c(x′) changes nothing there).

    >>> cam = ScoreCAM(model, layer="layer4", internal_batch_size=64)
    >>> maps = cam(x)                          # (N, H, W) in [0, 1]
    >>> w = cam.score_weights(x)               # (N, C) channel weights

    Args:
        baseline: x′ as in :class:`IntegratedGradCAM` (default "black").
        score: score masked inputs by probability ("prob", default) or by logit ("logit");
            ``softmax=True/False`` is the old spelling.
        weighting: "gain" (w_k the score gain, default) or "softmax" (softmax over the scored
            channels of the gains, the peers' weighting; channels not scored get 0).
        max_channels: keep only the channels with the largest mean activation (per image); the
            others get w_k = 0. None (default) scores every channel.
        internal_batch_size: masked inputs per forward pass (default "auto"; None: all).
    """

    needs_gradients = False

    @renamed_keywords(softmax="score")
    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, baseline: BaselineSpec = "black",
                 score: str = "prob", weighting: str = "gain", max_channels: Optional[int] = None,
                 blur_sigma: float = BLUR_SIGMA, internal_batch_size: BatchSizeSpec = INTERNAL_BATCH_SIZE,
                 **options):
        super().__init__(model, layer, internal_batch_size=internal_batch_size, **options)
        self.baseline = check_baseline(baseline)
        if isinstance(score, bool):  # the old softmax=True / False
            score = "prob" if score else "logit"
        self.score_kind = check_choice(score, SCORES, "score", tensor_ok=False)
        self.weighting = check_choice(weighting, WEIGHTINGS, "weighting", tensor_ok=False)
        self.max_channels = check_positive_int(max_channels, "max_channels", allow_none=True)
        self.blur_sigma = check_sigma(blur_sigma, "blur_sigma")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(layer={self.layer_name!r}, score={self.score_kind!r}, "
                f"weighting={self.weighting!r}, max_channels={self.max_channels}, relu={self.relu})")

    def score(self, logits: Tensor) -> Tensor:
        """What a masked input is scored by: class probabilities or the logits themselves."""
        return logits.softmax(dim=1) if self.score_kind == "prob" else logits

    def repeats(self) -> int:
        """R, the masked inputs per channel (1 for Score-CAM)."""
        return 1

    def prepare(self, x: Tensor, rows: int) -> dict[str, Any]:
        """Per-call state for ``rows`` masked inputs (random seeds). Default: nothing."""
        return {}

    def masked_inputs(self, x: Tensor, baseline: Tensor, masks: Tensor, at: MaskedRows,
                      context: dict[str, Any]) -> Tensor:
        r"""The masked inputs of one chunk, x′ + H ⊙ (x − x′), from the rows' images x (B, C, H, W),
        baselines x′ and masks H^k (B, 1, H, W); ``at`` says which image, channel and r each row is."""
        return torch.lerp(baseline, x, masks.to(x.dtype))

    def score_weights(self, x: Tensor, target: TargetSpec = None) -> Tensor:
        """The channel weights w_k: (N, C), or (N, K, C) for an (N, K) target."""
        check_images(x, self.model)
        targets = Targets.parse(target, x.shape[0], x.device)
        weights = self.activations_and_weights(x, targets)[1]
        squeeze = targets.squeeze if not targets.callable else weights.shape[1] == 1
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
        spatial = tuple(range(2, activation.ndim))
        order = activation.mean(dim=spatial).topk(kept, dim=1).indices  # (N, kept)
        repeats = self.repeats()
        expanded = targets.repeat_interleave(kept * repeats)
        context = self.prepare(x, n * kept * repeats)
        gains = base_scores.new_zeros(n * channels, base_scores.shape[1])
        for rows, image, position in expanded_rows(n, kept * repeats, self.rows_per_pass(x.device), x.device):
            channel = order[image, torch.div(position, repeats, rounding_mode="floor")]
            masks = normalize_maps(upsample_maps(activation[image, channel].unsqueeze(1), x.shape[2:]),
                                   spatial=x.ndim - 2)
            at = MaskedRows(rows, image, channel, position % repeats)
            masked = self.masked_inputs(x[image], baseline[image], masks, at, context)
            with torch.no_grad():
                scores = expanded.scores(self.score(self.forward(masked)), rows).float()
            gains.index_add_(0, image * channels + channel, scores - base_scores[image])
        weights = (gains / repeats).reshape(n, channels, -1).transpose(1, 2)  # (N, K, C)
        if self.weighting == "softmax":
            scored = torch.zeros_like(weights, dtype=torch.bool).scatter_(
                2, order.unsqueeze(1).expand(-1, weights.shape[1], -1), True)
            weights = weights.masked_fill(~scored, float("-inf")).softmax(dim=2)
        return activation, weights

    def channel_terms(self, x: Tensor, targets: Targets) -> Tensor:
        """The per-channel terms w_k A^k (N, K, C, h, w) (for :func:`~camkit.methods.smoothing.eigen_smooth`)."""
        activation, weights = self.activations_and_weights(x, targets)
        return weights.reshape(*weights.shape, *([1] * (activation.ndim - 2))) * activation.unsqueeze(1)

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        activation, weights = self.activations_and_weights(x, targets)
        return torch.einsum("nkc,nc...->nk...", weights, activation)


# --------------------------------------------------------------------------- SS-CAM

@register("sscam", "SS-CAM")
class SSCAM(ScoreCAM):
    r"""SS-CAM, Smoothed Score-CAM (Wang et al., 2020, https://arxiv.org/abs/2006.14255): Score-CAM
    with each mask perturbed by Gaussian noise and the gains averaged over S noisy masks.

    .. math:: w_k = \frac1S\sum_{s=1}^{S}\Big[s^c\big(x' + (H^k + \delta_s) \odot (x - x')\big) - s^c(x')\Big],
              \qquad \delta_s \sim \mathcal N(0, \sigma^2 I)

    δ_s is one noise image per masked input (shared by the colour channels), as in torchcam's
    ``SSCAM`` (noise on the normalised mask, not clamped). Each row draws its noise from its own
    stream, so a seeded map does not depend on ``internal_batch_size``.

    >>> cam = SSCAM(model, layer="layer4", samples=35, sigma=2.0, seed=0)
    >>> maps = cam(x)                          # (N, H, W) in [0, 1]
    >>> peers = SSCAM(model, "layer4", score="logit", weighting="softmax", seed=0)   # torchcam's weighting

    Args:
        samples: S, noisy masks per channel (default 35, as torchcam).
        sigma: σ of the mask noise (default 2.0, as torchcam; the mask lies in [0, 1]).
        seed, generator: reproducibility, as in :class:`ExpectedGradCAM`.
        baseline, score, weighting, max_channels, internal_batch_size: as in :class:`ScoreCAM`.
    """

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, samples: int = 35, sigma: float = 2.0,
                 seed: Optional[int] = None, generator: Optional[torch.Generator] = None, **options):
        super().__init__(model, layer, **options)
        self.samples = check_positive_int(samples, "samples")
        self.sigma = check_sigma(sigma)
        check_randomness(seed, generator)
        self.seed, self.generator = seed, generator

    def repeats(self) -> int:
        return self.samples

    def prepare(self, x: Tensor, rows: int) -> dict[str, Any]:
        return {"seeds": draw_seeds(make_generator(self.seed, self.generator), rows)}

    def mask_noise(self, seeds: list[int], masks: Tensor) -> Tensor:
        """σ·δ (B, 1, H, W), δ ~ N(0, I) drawn per row from its seed."""
        return self.sigma * per_row(seeds, masks.device, lambda g: torch.randn(
            masks.shape[1:], generator=g, device=masks.device, dtype=torch.float32)).to(masks.dtype)

    def masked_inputs(self, x: Tensor, baseline: Tensor, masks: Tensor, at: MaskedRows,
                      context: dict[str, Any]) -> Tensor:
        noisy = masks + self.mask_noise(context["seeds"][at.rows], masks)
        return torch.lerp(baseline, x, noisy.to(x.dtype))


# --------------------------------------------------------------------------- IS-CAM

@register("iscam", "IS-CAM")
class ISCAM(ScoreCAM):
    r"""IS-CAM, Integrated Score-CAM (Naidu et al., 2020, https://arxiv.org/abs/2010.03023): the
    Score-CAM gain integrated along the straight path from the baseline to the masked input.

    .. math:: w_k = \frac1m\sum_{s=1}^{m}\Big[s^c\big(x' + \tfrac{s}{m} H^k \odot (x - x')\big) - s^c(x')\Big]
              \;\approx\; \int_0^1 \Big[s^c\big(x' + t H^k \odot (x - x')\big) - s^c(x')\Big]\,dt

    (right Riemann points, as :class:`IntegratedGradCAM`). ``variant="cumulative"`` reproduces
    torchcam's ``ISCAM`` (and the paper's sum as torchcam documents it): the s-th input is
    :math:`x' + c_s H^k \odot (x - x')` with the *cumulative* coefficient
    :math:`c_s = \sum_{j=1}^{s} j/m = s(s+1)/2m`, which grows to (m + 1)/2, so the later inputs
    are the masked image amplified up to (m + 1)/2 times rather than points of a path to it.

    >>> cam = ISCAM(model, layer="layer4", steps=10)
    >>> maps = cam(x)                          # (N, H, W) in [0, 1]
    >>> torchcam_like = ISCAM(model, "layer4", variant="cumulative", score="logit", weighting="softmax")

    Args:
        steps: m, path points per channel (default 10, as torchcam's ``num_samples``).
        variant: "path" (the integral above, default) or "cumulative" (torchcam).
        baseline, score, weighting, max_channels, internal_batch_size: as in :class:`ScoreCAM`.
    """

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, steps: int = 10, variant: str = "path",
                 **options):
        super().__init__(model, layer, **options)
        self.steps = check_positive_int(steps, "steps")
        self.variant = check_choice(variant, ISCAM_VARIANTS, "variant", tensor_ok=False)

    def repeats(self) -> int:
        return self.steps

    def masked_inputs(self, x: Tensor, baseline: Tensor, masks: Tensor, at: MaskedRows,
                      context: dict[str, Any]) -> Tensor:
        s = (at.r + 1).to(torch.float32)
        coefficient = s / self.steps if self.variant == "path" else s * (s + 1) / (2 * self.steps)
        return torch.lerp(baseline, x, (coefficient.reshape(-1, *([1] * (masks.ndim - 1))) * masks).to(x.dtype))
