"""Contracts of sgjnd.runtime.patches: the grid, padding of small images, extraction and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgjnd.errors import UsageError
from sgjnd.runtime.patches import PatchGrid, extract_patches, normalize_patches, pad_to_patch, patch_grid
from sgjnd.spec import ModelSpec

RNG = np.random.default_rng(3)

grid_args = st.tuples(
    st.integers(1, 64),  # patch size
    st.integers(0, 300),  # extra height
    st.integers(0, 300),  # extra width
    st.one_of(st.none(), st.integers(8, 80)),  # stride
    st.one_of(st.none(), st.integers(1, 40)),  # cap
)


def cells(height: int, width: int, s: int, stride: int) -> tuple[int, int]:
    return (height - s) // stride + 1, (width - s) // stride + 1


@settings(max_examples=150, deadline=None)
@given(grid_args)
def test_grid_properties(args: tuple[int, int, int, int | None, int | None]) -> None:
    s, dh, dw, stride, cap = args
    height, width = s + dh, s + dw
    grid = patch_grid(height, width, s, stride=stride, max_patches=cap)
    step = s if stride is None else stride
    rows, cols = cells(height, width, s, step)
    y, x = grid.coords[:, 0], grid.coords[:, 1]

    assert grid.coords.dtype == np.int64 and grid.coords.shape == (len(grid), 2)
    assert grid.patch_size == s and grid.image_shape == (height, width)
    assert len(grid) == min(rows * cols, cap or rows * cols)  # count == min(cells, cap)
    assert (y >= 0).all() and (x >= 0).all() and (y + s <= height).all() and (x + s <= width).all()  # inside
    assert (y % step == 0).all() and (x % step == 0).all()  # on the stride lattice, starting at 0
    index = (y // step) * cols + x // step  # row-major cell number
    assert (np.diff(index) > 0).all()  # distinct, in row-major order
    again = patch_grid(height, width, s, stride=stride, max_patches=cap)
    np.testing.assert_array_equal(grid.coords, again.coords)  # deterministic
    if len(grid) == rows * cols:  # uncapped: every cell
        np.testing.assert_array_equal(index, np.arange(rows * cols))


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 60), st.integers(2, 60), st.integers(4, 64))
def test_capped_grid_reaches_every_quadrant(rows: int, cols: int, cap: int) -> None:
    """Even spreading: with k >= 4 patches on a grid of at least 2×2 cells, each quadrant gets at least one."""
    s = 10
    grid = patch_grid(rows * s, cols * s, s, max_patches=cap)
    i, j = grid.coords[:, 0] // s, grid.coords[:, 1] // s
    for top in (True, False):
        for left in (True, False):
            in_rows = (i < rows / 2) if top else (i >= rows / 2)
            in_cols = (j < cols / 2) if left else (j >= cols / 2)
            assert (in_rows & in_cols).any(), (top, left, grid.coords.tolist())


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 60), st.integers(2, 60), st.integers(2, 64))
def test_capped_grid_is_balanced(rows: int, cols: int, cap: int) -> None:
    """Even spreading: the chosen rows and columns are spread; no half of the grid gets much more than half."""
    s = 10
    grid = patch_grid(rows * s, cols * s, s, max_patches=cap)
    k = len(grid)
    i, j = grid.coords[:, 0] // s, grid.coords[:, 1] // s
    # Rows per half differ by at most one chosen row's worth of patches; columns likewise.
    per_row = max(np.bincount(i).max(), 1)
    assert abs(int((i < rows / 2).sum()) - k / 2) <= per_row + 1
    per_col = max(np.bincount(j).max(), 1)
    assert abs(int((j < cols / 2).sum()) - k / 2) <= per_col + 1


def test_capped_grid_example() -> None:
    """A 3×4-cell image capped at 6: two rows, three columns each, at the centres of equal shares."""
    grid = patch_grid(3 * 224, 4 * 224, 224, max_patches=6)
    assert (grid.coords // 224).tolist() == [[0, 0], [0, 2], [0, 3], [2, 0], [2, 2], [2, 3]]


def test_border_not_covered_and_stride() -> None:
    grid = patch_grid(500, 300, 224, max_patches=None)
    assert grid.coords.tolist() == [[0, 0], [224, 0]]  # 52 rows and 76 columns of border stay uncovered
    grid = patch_grid(448, 448, 224, stride=112, max_patches=None)
    assert len(grid) == 9 and grid.coords.max() == 224


def test_grid_refuses_small_images_and_bad_arguments() -> None:
    with pytest.raises(UsageError, match=r"smaller than the 224×224 patch size: pad it first.*pad_to_patch"):
        patch_grid(100, 500, 224)
    for kwargs in ({"stride": 0}, {"max_patches": 0}):
        with pytest.raises(UsageError):
            patch_grid(300, 300, 224, **kwargs)
    with pytest.raises(UsageError):
        patch_grid(300, 300, 0)


@pytest.mark.parametrize(("h", "w"), [(10, 300), (300, 7), (1, 1), (224, 224), (500, 600)])
def test_pad_to_patch_replicates_the_edges(h: int, w: int) -> None:
    image = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    padded, was_padded = pad_to_patch(image, 224)
    assert was_padded == (h < 224 or w < 224)
    assert padded.shape == (max(h, 224), max(w, 224), 3) and padded.dtype == np.uint8
    if not was_padded:
        assert padded is image
    np.testing.assert_array_equal(padded[:h, :w], image)
    np.testing.assert_array_equal(padded[h:, :w], np.broadcast_to(image[-1:], (padded.shape[0] - h, w, 3)))
    np.testing.assert_array_equal(
        padded[:, w:], np.broadcast_to(padded[:, w - 1 : w], (padded.shape[0], padded.shape[1] - w, 3))
    )
    grid = patch_grid(*padded.shape[:2], 224)  # the whole pipeline runs on the padded image
    assert len(grid) >= 1


def test_extract_patches_cuts_the_grid() -> None:
    image = RNG.integers(0, 256, (100, 130, 3), dtype=np.uint8)
    grid = patch_grid(100, 130, 32, stride=20, max_patches=5)
    patches = extract_patches(image, grid)
    assert patches.shape == (5, 32, 32, 3) and patches.dtype == np.uint8
    for patch, (y, x) in zip(patches, grid.coords.tolist(), strict=True):
        np.testing.assert_array_equal(patch, image[y : y + 32, x : x + 32])
    with pytest.raises(UsageError, match="grid was made for 100×130"):
        extract_patches(image[:90], grid)
    with pytest.raises(UsageError, match=r"\(H, W, 3\) uint8"):
        extract_patches(image.astype(np.float32), grid)


def naive_normalize(patches_bgr: np.ndarray, model: ModelSpec) -> np.ndarray:
    n, s = patches_bgr.shape[0], patches_bgr.shape[1]
    out = np.zeros((n, 3, s, s), dtype=np.float64)
    for k in range(n):
        for y in range(s):
            for x in range(s):
                b, g, r = (int(v) for v in patches_bgr[k, y, x])
                pixel = (r, g, b) if model.channel_order == "rgb" else (b, g, r)
                for c in range(3):
                    out[k, c, y, x] = (pixel[c] / 255.0 - model.mean[c]) / model.std[c]
    return out


@pytest.mark.parametrize("order", ["rgb", "bgr"])
def test_normalize_matches_a_naive_per_pixel_implementation(order: str) -> None:
    model = ModelSpec(name="t", patch_size=6, feature_dim=8, mean=(0.1, 0.5, 0.9), std=(0.2, 0.3, 0.4))
    model = ModelSpec(**{**model.__dict__, "channel_order": order})
    patches = RNG.integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
    patches[0, 0, 0] = (0, 128, 255)
    out = normalize_patches(patches, model)
    assert out.dtype == np.float32 and out.shape == (3, 3, 6, 6) and out.flags.c_contiguous
    np.testing.assert_allclose(out, naive_normalize(patches, model), rtol=1e-6, atol=1e-6)


def test_normalize_refuses_wrong_input() -> None:
    model = ModelSpec(name="t", patch_size=8, feature_dim=8)
    with pytest.raises(UsageError, match=r"expected \(N, 8, 8, 3\) uint8"):
        normalize_patches(np.zeros((2, 8, 8, 3), np.float32), model)
    with pytest.raises(UsageError):
        normalize_patches(np.zeros((2, 16, 16, 3), np.uint8), model)


def test_patch_grid_length() -> None:
    grid = PatchGrid(coords=np.zeros((3, 2), np.int64), patch_size=4, image_shape=(4, 4))
    assert len(grid) == 3
