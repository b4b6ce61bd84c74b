"""Input-space methods: Guided Backpropagation and Guided Grad-CAM."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor, nn

from ..common import row_chunks
from .base import BaseCAM, OutputSelector, Targets, register, scale_by_max_abs
from .single_pass import GradCAM
from .layers import LayerSpec

GUIDED_MODULES = (nn.ReLU, nn.ReLU6)


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward passes only the positive part of the incoming gradient."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.clamp(min=0)


@contextmanager
def guided_relus(model: nn.Module) -> Iterator[int]:
    """Make every ``nn.ReLU`` / ``nn.ReLU6`` module of ``model`` guided for the duration of the block.

    A forward hook follows each such module's output with :class:`_PositiveGradient`, so the
    backward becomes g_in = 1[x > 0] · ReLU(g_out) (the module's own mask times a clamp),
    in-place modules included. Hooks are removed on exit, also after an exception.
    Functional ``F.relu`` calls are not modules and stay unguided. Yields how many modules were guided.
    """
    handles = [m.register_forward_hook(lambda mod, inp, out: _PositiveGradient.apply(out))
               for m in model.modules() if isinstance(m, GUIDED_MODULES)]
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()


@register("guided-backprop", "Guided Backprop")
class GuidedBackprop(BaseCAM):
    r"""Guided Backpropagation (Springenberg et al., ICLR-W 2015, https://arxiv.org/abs/1412.6806).

    The input gradient ∂y^c/∂x with every ReLU's backward replaced by
    g_in = 1[x > 0] · ReLU(g_out). Returns (N, C, H, W) (or (N, K, C, H, W)), scaled by the largest
    absolute value per image and target when ``normalize=True``. Only ``nn.ReLU``/``nn.ReLU6``
    modules are guided (functional ``relu`` calls are not); a model with none raises ``ValueError``.
    No target layer is used.
    """

    relu_default = False  # a signed input-space gradient

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, internal_batch_size: Optional[int] = None,
                 output: OutputSelector = None):
        super().__init__(model, None, internal_batch_size=internal_batch_size, output=output)

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        out = []
        with guided_relus(self.model) as count:
            if count == 0:
                raise ValueError("Guided Backprop needs nn.ReLU modules to guide; this model has none "
                                 "(functional relu calls cannot be guided)")
            for rows in row_chunks(x.shape[0], self.rows_per_pass(x.device)):
                xr = x[rows].detach().requires_grad_(True)
                with torch.enable_grad():
                    scores = targets.scores(self.forward(xr), rows)
                    grads = [torch.autograd.grad(scores[:, k].sum(), xr, retain_graph=k + 1 < scores.shape[1])[0]
                             for k in range(scores.shape[1])]
                out.append(torch.stack(grads, 1))
        return torch.cat(out)

    def finish(self, maps: Tensor, x: Tensor, *, normalize: bool, upsample: bool) -> Tensor:
        return scale_by_max_abs(maps) if normalize else maps


@register("guided-gradcam", "Guided Grad-CAM")
class GuidedGradCAM(GuidedBackprop):
    r"""Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop times the upsampled Grad-CAM map.

    .. math:: G^c = \frac{\partial y^c}{\partial x}\Big|_{\text{guided}} \odot \mathrm{up}(M^c_{\text{Grad-CAM}})

    Shape (N, C, H, W) (or (N, K, C, H, W)), scaled by the largest absolute value per image.
    """

    def __init__(self, model: nn.Module, layer: LayerSpec = None, *, internal_batch_size: Optional[int] = None,
                 output: OutputSelector = None, **options):
        super().__init__(model, internal_batch_size=internal_batch_size, output=output)
        self.gradcam = GradCAM(model, layer, internal_batch_size=internal_batch_size, output=output, **options)

    @property
    def layer_name(self) -> Optional[str]:  # type: ignore[override]
        return self.gradcam.layer_name

    @layer_name.setter
    def layer_name(self, value) -> None:
        pass

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        targets = self.fix_targets(x, targets)
        guided = super().compute(x, targets)
        cam = self.gradcam.finish(self.gradcam.raw_maps(x, targets), x, normalize=True, upsample=True)
        return guided * cam.unsqueeze(2)
