"""camkit.viz: overlays, grids and curves draw what they are given."""
import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from camkit import viz


def test_overlay_blends_image_and_colormap():
    image = torch.zeros(3, 4, 4)
    cam_map = torch.zeros(4, 4)
    cam_map[0, 0] = 1.0
    out = viz.overlay(image, cam_map, alpha=1.0, cmap="gray")
    assert out.shape == (4, 4, 3)
    assert np.allclose(out[0, 0], 1.0) and np.allclose(out[1, 1], 0.0)
    assert np.allclose(viz.overlay(image + 1, cam_map, alpha=0.0), 1.0)
    with pytest.raises(ValueError, match="upsample"):
        viz.overlay(image, torch.zeros(2, 2))


def test_grid_has_one_row_per_image_and_a_column_per_method(tmp_path):
    images = torch.rand(2, 3, 8, 8)
    maps = {"a": torch.rand(2, 8, 8), "guided": torch.rand(2, 3, 8, 8) * 2 - 1}
    fig = viz.show_grid(images, maps, row_labels=["x", "y"], title="t")
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 2 * 3
    assert [ax.get_title() for ax in image_axes[:3]] == ["input", "a", "guided"]
    path = viz.save_figure(fig, "grid", directory=str(tmp_path))
    assert (tmp_path / "grid.png").stat().st_size > 1000 and path.endswith("grid.png")


def test_plot_curves_labels_axes():
    ax = viz.plot_curves([0, 1, 2], {"m": [1, 2, 3], "n": torch.tensor([3.0, 2, 1])}, xlabel="steps",
                         ylabel="error", logy=True, bands={"m": [0.1, 0.1, 0.1]})
    assert ax.get_xlabel() == "steps" and ax.get_ylabel() == "error" and ax.get_yscale() == "log"
    assert len(ax.lines) == 2
