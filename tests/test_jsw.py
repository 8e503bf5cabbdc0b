"""Joint space width from two bone masks (jsnq.jsw): known gaps, slopes, sub-pixel edges,
overlap, units, errors; the phantom's gap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jsnq.jsw import facing_surfaces, joint_space_width
from jsnq.phantom import make_pair

SHAPE = (96, 120)


def _bands(gap_rows: int, top: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Upper bone rows [10, top), lower bone rows [top + gap, 90), columns 10..109."""
    up = np.zeros(SHAPE, bool)
    lo = np.zeros(SHAPE, bool)
    up[10:top, 10:110] = True
    lo[top + gap_rows:90, 10:110] = True
    return up, lo


@pytest.mark.parametrize("gap", [0, 1, 4, 9])
def test_flat_gap_counts_the_background_rows(gap):
    """Binary masks: the width is the number of empty rows between the bones, exactly."""
    up, lo = _bands(gap)
    jsw = joint_space_width(up, lo)
    assert jsw.mean_px == pytest.approx(gap, abs=1e-9)
    assert jsw.min_px == pytest.approx(gap, abs=1e-9)
    # the central 50 % of the shared columns 10..109
    assert jsw.columns == (35, 84) and jsw.n_columns == 50


def test_facing_surfaces_are_pixel_boundaries_for_binary_masks():
    up, lo = _bands(4)
    yu, yl, both = facing_surfaces(up, lo)
    assert np.all(yu[both] == 39.5) and np.all(yl[both] == 43.5)
    assert not both[:10].any() and np.isnan(yu[:10]).all()


@pytest.mark.parametrize("gap", [3.3, 5.75, 8.1])
def test_subpixel_edges_from_probability_maps(gap):
    """Linear ramps (3 px wide, like a network's probabilities) across each edge put the 0.5
    crossing anywhere: recovered to 0.01 px."""
    rows = np.arange(SHAPE[0], dtype=float)[:, None] * np.ones(SHAPE)
    y_up = 40.2  # the upper bone's lower edge
    up = np.clip((y_up - rows) / 3.0 + 0.5, 0.0, 1.0)
    lo = np.clip((rows - (y_up + gap)) / 3.0 + 0.5, 0.0, 1.0)
    up[:, :10] = up[:, 110:] = 0
    lo[:, :10] = lo[:, 110:] = 0
    assert joint_space_width(up, lo).mean_px == pytest.approx(gap, abs=0.01)


@pytest.mark.parametrize("angle_deg", [0.0, 20.0, 35.0])
def test_a_sloping_gap_is_measured_across_not_vertically(angle_deg):
    """Two parallel edges at ``angle``, vertical distance ``g``: the width is ``g cos(angle)``
    (anti-aliased masks; tolerance 0.05 px)."""
    g = 8.0
    t = math.tan(math.radians(angle_deg))
    rows, cols = np.mgrid[0:SHAPE[0], 0:SHAPE[1]].astype(float)
    edge_up = 40.0 + t * (cols - 60.0)
    up = np.clip(edge_up - rows + 0.5, 0.0, 1.0)
    lo = np.clip(rows - (edge_up + g) + 0.5, 0.0, 1.0)
    sel = np.abs(cols - 60) > 30  # keep the edges inside the crop
    up[sel] = 0
    lo[sel] = 0
    jsw = joint_space_width(up, lo)
    assert jsw.mean_px == pytest.approx(g * math.cos(math.radians(angle_deg)), abs=0.05)


def test_overlapping_bones_give_a_negative_width():
    """Where the masks overlap on the projection the width is negative (signed)."""
    up, lo = _bands(0)
    up[40:43, :] = up[39:40, :]  # the upper bone reaches 3 rows into the lower one
    jsw = joint_space_width(up, lo)
    assert jsw.mean_px == pytest.approx(-3.0, abs=1e-9)
    assert jsw.min_px <= jsw.mean_px < 0


def test_minimum_and_units():
    up, lo = _bands(6)
    lo[44:46, 60] = True  # a bump of the lower bone: 2 px narrower at one column
    jsw = joint_space_width(up, lo, spacing_mm=0.2)
    assert jsw.min_px < jsw.mean_px < 6.0
    assert jsw.min_px == pytest.approx(4.0, abs=0.5)
    assert jsw.mean_mm == pytest.approx(0.2 * jsw.mean_px) and jsw.min_mm == pytest.approx(0.2 * jsw.min_px)
    assert jsw.to_dict()["spacing_mm"] == 0.2
    plain = joint_space_width(up, lo)
    assert plain.mean_mm is None and plain.min_mm is None and plain.spacing_mm is None


def test_central_fraction_selects_columns():
    up, lo = _bands(5)
    assert joint_space_width(up, lo, central_fraction=1.0).columns == (10, 109)
    with pytest.raises(ValueError, match="central_fraction"):
        joint_space_width(up, lo, central_fraction=0.0)


def test_errors():
    up, lo = _bands(5)
    with pytest.raises(ValueError, match="non-empty"):
        joint_space_width(np.zeros(SHAPE, bool), lo)
    with pytest.raises(ValueError, match="same shape"):
        joint_space_width(up, lo[:-1])
    side = np.zeros(SHAPE, bool)
    side[50:80, 0:8] = True
    with pytest.raises(ValueError, match="share no column"):
        joint_space_width(up, side)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_phantom_gap(seed):
    """The phantom's true masks: the minimum width is the rendered gap at the centre (the gap
    widens to the sides, so the mean is larger). The masks are pixel-centre samples, so a
    column's gap counts the pixel centres inside a gap of width g: between g - 1 and g + 1;
    hence 1.5 px."""
    pair = make_pair(seed)
    jsw = joint_space_width(pair.upper_mask, pair.lower_mask)
    gap = pair.params.bone.gap_px
    assert abs(jsw.min_px - gap) <= 1.5
    assert jsw.mean_px >= jsw.min_px


# -- the articular centre (where the narrowing is read) ----------------------------------------


def _joint(cx: float = 60.0, gap_row: int = 50, half_width: int = 20, shape=(100, 128)):
    """An upper bone (rectangle) above a lower one (a wider rectangle) with a 4 px gap, clear of
    the crop's border."""
    rows, cols = np.indices(shape)
    upper = (rows >= 10) & (rows < gap_row - 2) & (np.abs(cols - cx) <= half_width)
    lower = (rows >= gap_row + 2) & (rows < 90) & (np.abs(cols - cx) <= half_width + 6)
    return upper, lower


def test_articular_centre_is_the_middle_of_the_lower_bones_facing_surface():
    """Two symmetric bones: x the bones' common axis, y the lower bone's highest edge (the
    masks' edges are pixel boundaries: the lower's highest at 51.5)."""
    from jsnq.jsw import articular_centre

    x, y = articular_centre(*_joint())
    assert x == pytest.approx(60.0, abs=1e-9) and y == pytest.approx(51.5, abs=1e-9)


def test_articular_centre_y_ignores_the_upper_bones_lip():
    """The upper bone's mask reaching 6 px into the lower one at the centre (as the network's
    does where the bones overlap on the projection) leaves y, which is the lower bone's, alone."""
    from jsnq.jsw import articular_centre

    up, lo = _joint()
    lip = up.copy()
    lip[48:58, 55:66] = True
    assert articular_centre(up, lo)[1] == articular_centre(lip, lo)[1]


def _turned(mask: np.ndarray, transform) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    rows, cols = np.indices(mask.shape, dtype=float)
    src = transform.inverse().apply(np.stack([cols.ravel(), rows.ravel()], axis=1))
    return map_coordinates(mask.astype(float), [src[:, 1], src[:, 0]], order=1).reshape(mask.shape) >= 0.5


def test_pair_articular_centre_is_one_anatomical_point_whatever_the_turn():
    """A follow-up turned by 12 deg: each visit's own centre (found in its rows and columns)
    carried back differs from the baseline's by several px, the pair's centre found in one frame
    is the same point in both visits (to the masks' resampling, 0.5 px) and is symmetric: the
    visits swapped (with the inverse motion) give the same two points swapped."""
    from jsnq.geometry import Similarity
    from jsnq.jsw import articular_centre, pair_articular_centre

    up, lo = _joint(cx=64.0, shape=(128, 128))
    up[20:40, 40:50] = True  # something off the axis, so that a turn moves the column-based centre
    motion = Similarity(1.0, np.radians(12.0), 2.0, -3.0, (64.0, 64.0))
    fol = (_turned(up, motion), _turned(lo, motion))
    own = motion.inverse().apply(np.asarray(articular_centre(*fol)))
    p, q = pair_articular_centre((up, lo), fol, motion)
    assert np.hypot(*(own - np.asarray(articular_centre(up, lo)))) > 1.0
    assert np.hypot(*(motion.apply(np.asarray(p)) - np.asarray(q))) < 1e-9
    q2, p2 = pair_articular_centre(fol, (up, lo), motion.inverse())
    assert np.allclose(p2, p, atol=1e-6) and np.allclose(q2, q, atol=1e-6)
    alone, _ = pair_articular_centre((up, lo), None, Similarity.identity((64.0, 64.0)))
    assert alone == pytest.approx(articular_centre(up, lo), abs=1e-9)
    with pytest.raises(ValueError):
        pair_articular_centre(None, None, motion)


def test_articular_centre_moves_with_the_bones_not_the_window():
    """Shifting both masks by whole pixels shifts the centre by exactly as much; a mask's
    margin moved by 2 px on one side moves x by about half that (areas, not span ends)."""
    from jsnq.jsw import articular_centre

    up, lo = _joint()
    x0, y0 = articular_centre(up, lo)
    x1, y1 = articular_centre(np.roll(up, (3, -5), axis=(0, 1)), np.roll(lo, (3, -5), axis=(0, 1)))
    assert (x1 - x0, y1 - y0) == pytest.approx((-5.0, 3.0), abs=1e-9)
    wider = lo | np.roll(lo, 2, axis=1)
    x2, _ = articular_centre(up, wider)
    assert 0.0 < x2 - x0 <= 1.0


def test_articular_centre_needs_facing_bones():
    from jsnq.jsw import articular_centre

    up, lo = _joint()
    with pytest.raises(ValueError):
        articular_centre(up, np.zeros_like(lo))
