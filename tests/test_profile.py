"""The bone split of hand crops from intensity profiles (jsnq.segment.profile)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from jsnq.labels import LOWER, UPPER, labels_from_masks, line_from_labels
from jsnq.segment.profile import (MIN_VALLEY_FRACTION, finger_columns, profile_candidates, profile_split,
                                  search_columns, valley_fraction)

GAP_PX = 6.0


def _joint(seed: int = 0, noise: float = 0.02, gap: float = GAP_PX, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A 256 x 256 crop: two bright bones with textured marrow and bright subchondral plates,
    a dark joint space ``gap`` px wide whose midline curves gently about row 128 + shift."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:256, 0:256].astype(float)
    mid = 128.0 + shift + 5.0 * np.sin((np.arange(256) - 128) / 40.0)
    d = rows - mid[None, :]
    bone = np.clip((np.abs(d) - gap / 2) + 0.5, 0, 1)             # 0 in the gap, 1 in bone (1 px ramp)
    plate = np.exp(-((np.abs(d) - gap / 2 - 2.0) / 1.5) ** 2)      # the subchondral plates
    width = (np.abs(cols - 127.5) < 95).astype(float)
    img = 0.2 + (0.5 * bone + 0.25 * plate) * width
    img += 0.05 * np.sin(rows / 3.1) * np.cos(cols / 2.3) * bone   # trabecular texture
    return img + rng.normal(0, noise, img.shape), mid


def test_split_line_lies_in_the_joint_space_with_its_width():
    """Tolerances: the line within 1 px of the gap's midline (the valley path is integer rows,
    smoothed 1.5 px); the JSW within 1 px of the gap (edges at the steepest rise, 1 px ramps)."""
    img, mid = _joint()
    s = profile_split(img, spacing_mm=0.05)
    c0, c1 = search_columns(256)
    assert np.max(np.abs(s.line[c0:c1 + 1] - mid[c0:c1 + 1])) < 1.0
    assert s.problem is None and s.valley_fraction > 0.9
    assert s.jsw is not None and s.jsw.mean_px == pytest.approx(GAP_PX, abs=1.0)
    assert s.jsw.mean_mm == pytest.approx(s.jsw.mean_px * 0.05)
    f0, f1 = finger_columns(256)
    assert (s.labels[:, :f0] == 0).all() and (s.labels[:, f1 + 1:] == 0).all()
    assert s.labels[40, 128] == UPPER and s.labels[220, 128] == LOWER
    assert s.centre_px[1] == pytest.approx(mid[128], abs=1.5)


def test_a_joint_away_from_the_centre_is_still_a_candidate():
    """A landmark off by ~3 mm puts the joint 50 px from the crop's centre: the unpenalised
    path finds it."""
    img, mid = _joint(shift=50.0)
    rows = [c.centre_px[1] for c in profile_candidates(img)]
    assert any(abs(r - mid[128]) < 1.5 for r in rows), rows


@pytest.mark.parametrize("offset", [-30, -20, -12, 12, 20, 30])
def test_misplaced_split_lines_are_caught(offset):
    """A line moved into either bone does not lie in a valley."""
    img, mid = _joint(seed=3)
    assert valley_fraction(img, mid) >= MIN_VALLEY_FRACTION
    assert valley_fraction(img, mid + offset) < MIN_VALLEY_FRACTION


def test_no_joint_space_is_a_problem():
    rng = np.random.default_rng(1)
    flat = 0.6 + rng.normal(0, 0.02, (256, 256))
    s = profile_split(flat)
    assert s.problem is not None and "no joint space" in s.problem


def test_real_mcp_crops_split_at_the_masks_midline_and_misplaced_lines_are_caught(shared_data):
    """60 real MCP crops (finger-joints, with the true bone masks): the split line's median row
    (central columns) within 3 px of the masks' midline in >= 75 % of crops (measured 80 %;
    the rest are crops whose masks overlap or whose line is flagged), and lines moved 12-30 px
    off it caught in >= 95 % (measured 359 of 360), the issue's target for misplaced splits."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import load_crop, manifest

    root = shared_data
    rows = manifest(root)
    pick = np.random.default_rng(0).choice(len(rows), 60, replace=False)
    c0, c1 = search_columns(256)
    near, caught, tried = 0, 0, 0
    for i in pick:
        crop = load_crop(root, rows[i])
        s = profile_split(crop.image)
        true = line_from_labels(labels_from_masks(crop.upper, crop.lower))
        near += abs(np.nanmedian(s.line[c0:c1 + 1] - true[c0:c1 + 1])) < 3
        for offset in (-30, -20, -12, 12, 20, 30):
            tried += 1
            caught += valley_fraction(crop.image, s.line + offset) < MIN_VALLEY_FRACTION
    assert near >= 0.75 * len(pick)
    assert caught >= 0.95 * tried


def test_min_cost_path_steps_at_most_max_step_rows():
    """The dynamic programme behind every valley path: a zero-cost trail that jumps 3 rows at
    column 5 is followed exactly with ``max_step=3``; with the default of one row a column it
    cannot be, and the path moves one row per column, paying the penalty, to stay on it
    elsewhere."""
    from jsnq.segment.classical import min_cost_path

    cost = np.ones((12, 10))
    trail = np.array([4] * 5 + [7] * 5)
    cost[trail, np.arange(10)] = 0.0
    assert np.array_equal(min_cost_path(cost, 0.1, max_step=3), trail)
    one = min_cost_path(cost, 0.1)
    assert np.abs(np.diff(one)).max() <= 1 and not np.array_equal(one, trail)
