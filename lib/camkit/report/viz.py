"""Drawing for the notebooks: overlays, image × method grids with a colour bar, curves.

Plotting is not a hot path: these helpers move tensors to NumPy for matplotlib.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from ..transforms import denormalize  # re-exported for notebooks

__all__ = ["to_image", "overlay", "show_grid", "plot_curves", "save_figure", "denormalize", "method_label",
           "method_colour"]

#: One colour per method, fixed across every figure of the report (tab20, in registry order).
_PALETTE = "tab20"


def method_label(name: str) -> str:
    """The prose name of a method (``"gradcam++"`` → ``"Grad-CAM++"``; a reading ``"name/authors-code"``
    → ``"Integrated Grad-CAM (authors code)"``); other strings are returned as they are."""
    from ..methods import METHODS

    method, _, reading = name.partition("/")
    if method not in METHODS:
        return name
    return METHODS[method].label + (f" ({reading.replace('-', ' ')})" if reading else "")


def method_colour(name: str):
    """The fixed colour of a method, by its name or label (None for a string that names no method)."""
    from ..methods import METHODS

    names = list(METHODS)
    by_label = {cls.label: key for key, cls in METHODS.items()}
    key = name if name in METHODS else by_label.get(name)
    if key is None:
        return None
    return matplotlib.colormaps[_PALETTE](names.index(key) % 20)


def to_image(x: Tensor) -> np.ndarray:
    """A (C, H, W) tensor in [0, 1] (or an (H, W) map) as an (H, W, C) / (H, W) NumPy array."""
    x = x.detach().float().cpu()
    if x.ndim == 3:
        x = x.permute(1, 2, 0)
        if x.shape[-1] == 1:
            x = x[..., 0]
    return x.clamp(0, 1).numpy()


def overlay(image: Tensor, cam_map: Tensor, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] map (H, W) over an image (3, H, W): (1 − α)·image + α·colormap(map)."""
    if cam_map.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"map {tuple(cam_map.shape)} and image {tuple(image.shape)} differ in size; "
                         "upsample the map first")
    colours = matplotlib.colormaps[cmap](to_image(cam_map))[..., :3]
    base = to_image(image)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=-1)
    return (1 - alpha) * base + alpha * colours


def _input_space_to_map(maps: Tensor, percentile: float = 0.99) -> Tensor:
    """Guided (C, H, W) gradients shown as an image: 0.5 + 0.5·g/s clipped to [0, 1], s the 99th
    percentile of |g| (so 0 is grey and the sparse large values do not wash the rest out)."""
    scale = torch.quantile(maps.detach().abs().flatten().float().cpu(), percentile).clamp_min(1e-12)
    return (0.5 + 0.5 * maps.detach().cpu() / scale).clamp(0, 1)


def _column_title(name: str, width: int = 12) -> str:
    """Break long method names at hyphens so neighbouring column titles do not collide."""
    return name.replace("-", "-\n") if len(name) > width else name


def show_grid(images: Tensor, maps: Mapping[str, Tensor], *, row_labels: Optional[Sequence[str]] = None,
              alpha: float = 0.5, cmap: str = "jet", raw: bool = False, title: Optional[str] = None,
              cell_size: float = 2.0):
    """One row per image, one column per method: the input, then each method's overlay.

    ``maps`` maps a method name to (N, H, W) maps in [0, 1] (or input-space (N, C, H, W) maps,
    drawn as images). ``raw=True`` shows the maps alone instead of overlays. A colour bar
    gives the map scale. Returns the figure.
    """
    n = images.shape[0]
    names = list(maps)
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(cell_size * (len(names) + 1.3), cell_size * n + 0.8),
                             squeeze=False, layout="constrained")
    for row in range(n):
        axes[row, 0].imshow(to_image(images[row]))
        axes[row, 0].set_ylabel(row_labels[row] if row_labels else f"image {row}", fontsize=9)
        for col, name in enumerate(names, start=1):
            m = maps[name][row]
            if m.ndim == 3:
                axes[row, col].imshow(to_image(_input_space_to_map(m)))
            elif raw:
                axes[row, col].imshow(to_image(m), cmap=cmap, vmin=0, vmax=1)
            else:
                axes[row, col].imshow(overlay(images[row], m, alpha, cmap))
    for col, name in enumerate(["input"] + names):
        axes[0, col].set_title(_column_title(name), fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=cmap)
    fig.colorbar(mappable, ax=axes, fraction=0.02, pad=0.01, label="map value")
    if title:
        fig.suptitle(title)
    return fig


def plot_curves(x, curves: Mapping[str, "np.ndarray | Tensor"], *, xlabel: str, ylabel: str,
                title: Optional[str] = None, ax=None, logy: bool = False, logx: bool = False,
                bands: Optional[Mapping[str, "np.ndarray | Tensor"]] = None):
    """Line plot of several named curves over a shared x, with optional ±band shading. Returns the axes.

    A curve named after a method (``"gradcam"`` or ``"Grad-CAM"``) gets that method's fixed colour
    (:func:`method_colour`), so a method looks the same in every figure.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    xs = np.asarray(torch.as_tensor(x).detach().cpu())
    for label, y in curves.items():
        ys = np.asarray(torch.as_tensor(y).detach().cpu())
        (line,) = ax.plot(xs, ys, label=label, marker="o" if len(xs) <= 12 else None, markersize=3,
                          color=method_colour(label))
        if bands and label in bands:
            band = np.asarray(torch.as_tensor(bands[label]).detach().cpu())
            ax.fill_between(xs, ys - band, ys + band, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    return ax


def save_figure(fig, name: str, directory: Optional[str] = None, dpi: int = 110) -> str:
    """Save ``fig`` as ``directory/name.png`` (directories created); returns the path.

    ``directory`` defaults to :func:`camkit.report.figures_dir` (``$CAMKIT_FIGURES_DIR`` or the
    report's ``figures/``).
    """
    if directory is None:
        from . import figures_dir

        directory = str(figures_dir())
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.png")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
