r"""FullGrad: the input-gradient and every bias-gradient of the network, post-processed and summed."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common import check_choice, row_chunks
from ..transforms import Normalize
from .base import BatchSizeSpec, BaseCAM, Targets, normalize_maps, register
from .layers import LayerSpec

#: Readings of FullGrad's post-processing ψ.
FULLGRAD_VARIANTS = ("paper", "authors-code")
#: The modules whose bias-gradients FullGrad aggregates (convolutions and batch norms over images or volumes).
BIAS_MODULES = (nn.Conv2d, nn.Conv3d, nn.BatchNorm2d, nn.BatchNorm3d)
#: The ε of the authors' rescaling (x − min) / (max + ε).
AUTHORS_EPS = 1e-6


@register("fullgrad", "FullGrad")
class FullGrad(BaseCAM):
    r"""FullGrad (Srinivas & Fleuret, NeurIPS 2019, https://arxiv.org/abs/1905.00780), Eq. 7.

    For a network with biases, :math:`f(x) = \nabla_x f^\top x + \sum_{l}\sum_{c} f^b_{l,c}(x)`, where
    the bias-gradient of channel c of layer l is :math:`f^b_{l,c} = b_{l,c}\,\partial f/\partial z_{l,c}`
    (z_l the layer's output, a map over positions). The saliency map post-processes every term:

    .. math:: M = \sum_{c} \psi\big((\nabla_x f \odot x)_c\big) + \sum_{l}\sum_{c} \psi\big(f^b_{l,c}\big),
              \qquad \psi = \mathrm{up} \circ \mathrm{minmax} \circ |\cdot|

    with l over every Conv2d/Conv3d and BatchNorm2d/3d with a bias (a batch norm's bias is
    :math:`\beta - \gamma\mu/\sqrt{\sigma^2 + \epsilon}`, as in the authors' code). ``variant="paper"``
    (default) applies ψ to each channel's map, as Eq. 7 and pytorch-grad-cam do;
    ``variant="authors-code"`` rescales each layer's whole tensor at once and upsamples with
    align_corners=True, as the authors' repository.

    FullGrad explains the whole network: ``layer`` is accepted (so every method takes the same
    arguments) and ignored. The input term is taken at the output of the model's
    :class:`camkit.Normalize` module when it has one, i.e. in the normalised space the network
    itself sees (as the paper and the peers, which are fed normalised images); otherwise at x.
    Batched over images and targets; one backward pass per target.

    >>> cam = FullGrad(model)
    >>> maps = cam(x)                          # (N, H, W) in [0, 1]
    >>> raw = cam(x, normalize=False)          # the sum above

    Args:
        variant: "paper" (ψ per channel, default) or "authors-code" (ψ per layer).
        internal_batch_size: images per forward/backward pass (None, default: all).
    """

    relu_default = False  # a sum of non-negative terms

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, variant: str = "paper",
                 internal_batch_size: BatchSizeSpec = None, **options):
        for ignored in ("reshape", "layer_input"):  # FullGrad reads no layer
            options.pop(ignored, None)
        super().__init__(model, None, internal_batch_size=internal_batch_size, **options)
        self.variant = check_choice(variant, FULLGRAD_VARIANTS, "variant", tensor_ok=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(variant={self.variant!r})"

    @contextmanager
    def record(self) -> Iterator["_Records"]:
        """Record (z, b) for every call of a bias module (z its output, b its per-channel bias)
        and the first :class:`~camkit.Normalize` output, during the forwards run inside this block;
        each z is handed on as a copy, so in-place ops after it leave it intact."""
        records = _Records()

        def bias_hook(module, inputs, output):
            bias = effective_bias(module)
            if bias is None or not torch.is_tensor(output) or output.ndim < 4:
                return None
            records.biases.append((output, bias))
            return output.clone()

        def normalize_hook(module, inputs, output):
            if records.normalized is not None:
                return None
            records.normalized = output
            return output.clone()

        handles = []
        try:
            for module in self.model.modules():
                if isinstance(module, BIAS_MODULES):
                    handles.append(module.register_forward_hook(bias_hook))
                elif isinstance(module, Normalize):
                    handles.append(module.register_forward_hook(normalize_hook))
            yield records
        finally:
            for handle in handles:
                handle.remove()

    def psi(self, terms: Tensor, size) -> Tensor:
        """ψ of ``(B, C, *spatial)`` terms, summed over channels: ``(B, *size)``."""
        spatial = terms.ndim - 2
        terms = terms.abs().float()
        if self.variant == "paper":
            summed = normalize_maps(terms, spatial=spatial).sum(1, keepdim=True)
            align = False
        else:
            flat = terms.flatten(1)
            low = flat.amin(1).reshape(-1, *([1] * (terms.ndim - 1)))
            terms = terms - low
            high = terms.flatten(1).amax(1).reshape(-1, *([1] * (terms.ndim - 1)))
            summed = (terms / (high + AUTHORS_EPS)).sum(1, keepdim=True)
            align = True
        if tuple(summed.shape[2:]) != tuple(size):
            mode = "trilinear" if spatial == 3 else "bilinear"
            summed = F.interpolate(summed, size=tuple(size), mode=mode, align_corners=align)
        return summed[:, 0]

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        maps = []
        for rows in row_chunks(x.shape[0], self.rows_per_pass(x.device)):
            inputs = x[rows].detach().requires_grad_(True)
            with torch.enable_grad(), self.record() as records:
                scores = targets.scores(self.forward(inputs), rows)
                start = inputs if records.normalized is None else records.normalized
                tensors = [start] + [z for z, _ in records.biases]
                per_target = []
                for k in range(scores.shape[1]):
                    grads = [None] * len(tensors)
                    if scores.requires_grad:
                        grads = torch.autograd.grad(scores[:, k].sum(), tensors, allow_unused=True,
                                                    retain_graph=k + 1 < scores.shape[1])
                    per_target.append(self.combine(start.detach(), grads, records.biases, x.shape[2:]))
            maps.append(torch.stack(per_target, 1))
        return torch.cat(maps)

    def combine(self, start: Tensor, grads, records, size) -> Tensor:
        """M ``(B, *size)`` from the gradients of the input and of every bias module's output."""
        total = torch.zeros(start.shape[0], *size, device=start.device)
        if grads[0] is not None:
            total = total + self.psi(grads[0] * start, size)
        for g, (z, bias) in zip(grads[1:], records):
            if g is not None:
                total = total + self.psi(g * bias.reshape(1, -1, *([1] * (z.ndim - 2))).to(g.dtype), size)
        return total


class _Records:
    """What :meth:`FullGrad.record` saw: (output, bias) of every bias module call, the Normalize output."""

    def __init__(self):
        self.biases: list[tuple[Tensor, Tensor]] = []
        self.normalized: Optional[Tensor] = None


def effective_bias(module: nn.Module) -> Optional[Tensor]:
    """A module's additive per-channel bias b (detached), or None: a convolution's ``bias``; a batch
    norm's β − γμ/√(σ² + ε) with its running statistics (β, γ = 0, 1 when it has no affine part)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        beta = module.bias.detach() if module.bias is not None else None
        if module.running_mean is None:
            return beta
        gamma = module.weight.detach() if module.weight is not None else torch.ones_like(module.running_mean)
        shift = module.running_mean * gamma / torch.sqrt(module.running_var + module.eps)
        return (beta if beta is not None else torch.zeros_like(shift)) - shift
    bias = getattr(module, "bias", None)
    return bias.detach() if torch.is_tensor(bias) else None
