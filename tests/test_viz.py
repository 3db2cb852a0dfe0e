import numpy as np
import pytest
import torch
from PIL import Image

from colab_utils.data.synthetic import PARTS, make_face
from colab_utils.viz import (PART_COLORS, image_grid, label_map_to_color, make_gif, plot_curves, save_grid, show,
                             to_uint8)


def test_to_uint8_maps_range_and_layouts():
    t = torch.tensor([-1.0, -0.5, 0.0, 1.0, 3.0, -7.0]).reshape(1, 1, 2, 3).repeat(2, 3, 1, 1)
    out = to_uint8(t)
    assert out.shape == (2, 2, 3, 3) and out.dtype == np.uint8
    assert out[0, :, :, 0].ravel().tolist() == [0, 64, 128, 255, 255, 0]
    assert to_uint8(t[0]).shape == (1, 2, 3, 3)                     # CHW -> 1HWC
    assert to_uint8(torch.zeros(2, 1, 4, 5)).shape == (2, 4, 5, 3)  # grey -> RGB
    arr = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert np.array_equal(to_uint8(arr)[0], arr)
    assert to_uint8(np.zeros((4, 5), np.uint8)).shape == (1, 4, 5, 3)
    assert to_uint8(Image.new("L", (5, 4), 7)).shape == (1, 4, 5, 3)
    with pytest.raises(ValueError, match="uint8"):
        to_uint8(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_uint8(torch.zeros(2, 5, 4, 4))


@pytest.mark.parametrize("n, nrow, padding", [(10, 4, 2), (3, 8, 0), (8, 8, 5), (1, 3, 1)])
def test_image_grid_size_arithmetic(n, nrow, padding):
    grid = image_grid(torch.zeros(n, 3, 16, 12), nrow=nrow, padding=padding)
    cols = min(nrow, n)
    rows = -(-n // cols)
    assert grid.size == (cols * 12 + (cols + 1) * padding, rows * 16 + (rows + 1) * padding)


def test_image_grid_places_tiles_and_padding():
    tiles = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, 1.0, -1.0)])
    grid = np.asarray(image_grid(tiles, nrow=2, padding=1, pad_value=100))
    assert grid.shape == (11, 11, 3)
    assert (grid[1:5, 1:5] == 0).all() and (grid[1:5, 6:10] == 255).all() and (grid[6:10, 1:5] == 0).all()
    assert (grid[0] == 100).all() and (grid[:, 5] == 100).all()
    assert (grid[6:10, 6:10] == 100).all()                   # the empty last cell is padding


def test_image_grid_mixed_list_and_labels():
    face = make_face(0, 32)[0]
    grid = image_grid([face, Image.fromarray(face), torch.zeros(3, 32, 32), label_map_to_color(make_face(0, 32)[1])],
                      nrow=2, padding=2)
    assert grid.size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)
    labelled = image_grid(torch.zeros(4, 3, 32, 32), nrow=2, row_labels=["a", "bb"], col_labels=["x", "y"])
    assert labelled.width > grid.width and labelled.height > grid.height
    with pytest.raises(ValueError, match="one size"):
        image_grid([face, np.zeros((16, 16, 3), np.uint8)])
    with pytest.raises(ValueError, match="row_labels"):
        image_grid(torch.zeros(4, 3, 8, 8), nrow=2, row_labels=["only one"])


def test_save_grid(tmp_path):
    path = save_grid(torch.zeros(5, 3, 8, 8), tmp_path / "out" / "grid.png", nrow=5, padding=1)
    assert path.is_file() and Image.open(path).size == (5 * 8 + 6, 8 + 2)


def test_label_map_to_color():
    labels = np.arange(len(PARTS), dtype=np.uint8).reshape(1, -1)
    colors = label_map_to_color(labels)
    assert colors.shape == (1, len(PARTS), 3) and colors.dtype == np.uint8
    assert np.array_equal(colors[0], PART_COLORS)
    assert len({tuple(c) for c in PART_COLORS}) == len(PARTS)
    with pytest.raises(ValueError, match="PARTS"):
        label_map_to_color(np.array([[len(PARTS)]]))


def test_make_gif_frame_count_and_timing(tmp_path):
    import imageio.v3 as iio

    frames = [np.full((40, 60, 3), 30 * i, np.uint8) for i in range(5)]
    path = make_gif(frames, tmp_path / "walk.gif", fps=20)
    back = iio.imread(path, index=None)
    assert back.shape[:3] == (5, 40, 60)
    assert iio.immeta(path, index=0)["duration"] == 50 and iio.immeta(path, index=0)["loop"] == 0
    small = make_gif(torch.rand(3, 3, 64, 32) * 2 - 1, tmp_path / "small.gif", fps=10, max_side=32)
    assert iio.imread(small, index=None).shape[:3] == (3, 32, 16)
    assert not list(tmp_path.glob(".*"))
    with pytest.raises(ValueError, match="gif"):
        make_gif(frames, tmp_path / "walk.mp4")
    with pytest.raises(ValueError, match="no frames"):
        make_gif([], tmp_path / "empty.gif")


def test_plot_curves(tmp_path):
    history = {"loss_G": [(i * 10, 1.0 / (i + 1)) for i in range(50)], "loss_D": [(0, 0.5), (10, float("nan"))],
               "fid": [], "r1": [0.1, 0.2, 0.3]}
    fig = plot_curves(history, tmp_path / "curves.png", title="run 1")
    assert (tmp_path / "curves.png").is_file()
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 4
    assert fig.axes[0].get_title() == "loss_G" and len(fig.axes[0].lines) == 2  # raw + running mean
    with pytest.raises(ValueError):
        plot_curves({})


def test_show_outside_notebook_prints(capsys):
    show(make_face(0, 32)[0])
    show(torch.zeros(4, 3, 8, 8))
    out = capsys.readouterr().out
    assert "32x32" in out and "42x12" in out


def test_image_grid_title_adds_a_band_of_text_above():
    plain = image_grid(torch.zeros(2, 3, 16, 16), nrow=2)
    titled = image_grid(torch.zeros(2, 3, 16, 16), nrow=2, title="step 8 (0.1 kimg)")
    assert titled.width == plain.width and titled.height > plain.height
    band = np.asarray(titled)[:titled.height - plain.height]
    assert (band < 128).any() and (band == 255).mean() > 0.5           # black text on white
    assert np.array_equal(np.asarray(titled)[titled.height - plain.height:], np.asarray(plain))
    other = image_grid(torch.zeros(2, 3, 16, 16), nrow=2, title="step 16 (0.1 kimg)")
    assert not np.array_equal(np.asarray(other), np.asarray(titled))


def test_plot_curves_labels_axes_with_plain_values_not_an_offset():
    """A diversity weight decaying from 1 by 1e-5 per step once read "1e-5+9.999e-1" on its axis."""
    history = {"lambda_ds": [(step, 1.0 - (step - 100_000) * 1e-5) for step in range(100_000, 100_010)]}
    fig = plot_curves(history)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.yaxis.get_offset_text().get_text() == "" and ax.xaxis.get_offset_text().get_text() == ""
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(0.9998 <= float(label.replace("\u2212", "-")) <= 1.0001 for label in labels), labels
