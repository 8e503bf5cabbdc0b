"""Tests of the synthetic joint phantom and of apply_bone_motions (fast: a few seconds)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from jsnq.geometry import Similarity, crop_centre, narrowing_px, symmetric_narrowing_px
from jsnq.phantom import (
    BLEND_PX,
    Acquisition,
    BoneShape,
    PhantomPair,
    PhantomParams,
    apply_bone_motions,
    make_pair,
    render,
    Texture,
    sample_params,
    side_weight,
)

SHAPE = (256, 256)
C = crop_centre(SHAPE)


def _still(p: PhantomParams, motion: Similarity | None = None, **changes) -> PhantomParams:
    """``p`` with both bones moved by ``motion`` (identity by default), no exposure change
    and no noise."""
    m = Similarity.identity(p.centre) if motion is None else motion
    acquisition = dataclasses.replace(p.acquisition, gain=1.0, offset=0.0, noise_sigma=0.0, **changes)
    return dataclasses.replace(p, upper=m, lower=m, acquisition=acquisition)


@pytest.fixture(scope="module")
def params() -> PhantomParams:
    return sample_params(np.random.default_rng(11))


@pytest.fixture(scope="module")
def pair(params) -> PhantomPair:
    return render(params)


# -- rendering: determinism, types, separation of sampling and rendering ------------------
def test_render_types_and_range(pair):
    assert isinstance(pair, PhantomPair)
    for img in (pair.baseline, pair.followup):
        assert img.shape == SHAPE and img.dtype == np.float32
        assert np.all(np.isfinite(img))
        assert -0.2 < img.min() and img.max() < 1.2  # "roughly in [0, 1]"
    for lab in (pair.baseline_labels, pair.followup_labels):
        assert lab.shape == SHAPE and lab.dtype == np.uint8
    assert pair.upper_mask.dtype == bool and pair.lower_mask.dtype == bool
    assert pair.upper_mask.any() and pair.lower_mask.any()
    assert not (pair.upper_mask & pair.lower_mask).any()


def test_render_is_deterministic(params, pair):
    again = render(params)
    for f in ("baseline", "followup", "baseline_labels", "followup_labels", "upper_mask",
              "lower_mask"):
        assert np.array_equal(getattr(pair, f), getattr(again, f)), f
    assert again.narrowing_px == pair.narrowing_px


def test_sampling_is_separate_from_rendering(params, pair):
    # the same generator state gives the same params; make_pair = render(sample_params(...))
    assert sample_params(np.random.default_rng(11)) == params
    assert sample_params(np.random.default_rng(12)) != params
    made = make_pair(11)
    assert made.params == params
    assert np.array_equal(made.baseline, pair.baseline)
    assert np.array_equal(made.followup, pair.followup)
    # sampling kwargs are honoured
    assert make_pair(3, noise=0.0).params.acquisition.noise_sigma == 0.0


def test_noise_seed_changes_the_noise_only(params):
    def acquiring(p, **changes):
        return dataclasses.replace(p, acquisition=dataclasses.replace(p.acquisition, **changes))

    p = acquiring(params, noise_sigma=0.02)
    a = render(p)
    b = render(acquiring(p, noise_seed=p.acquisition.noise_seed + 1))
    clean = render(acquiring(p, noise_sigma=0.0))
    assert not np.array_equal(a.baseline, b.baseline)
    assert not np.array_equal(a.followup, b.followup)
    for f in ("baseline_labels", "followup_labels", "upper_mask", "lower_mask"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    # what changes is noise of the stated size: 0.02 * each image's intensity range
    for noisy, ref in ((a.baseline, clean.baseline), (a.followup, clean.followup)):
        sd = float(np.std(noisy.astype(float) - ref))
        assert sd == pytest.approx(0.02 * float(np.ptp(ref)), rel=0.05)
    # baseline and follow-up noise are independent streams
    nb = (a.baseline - clean.baseline).ravel()
    nf = (a.followup - clean.followup).ravel()
    assert abs(np.corrcoef(nb, nf)[0, 1]) < 0.03


def test_default_params_render():
    pr = render(PhantomParams())
    assert pr.params.upper == Similarity.identity(C)
    assert pr.narrowing_px == 0.0


# -- ground truth --------------------------------------------------------------------------
def test_true_narrowing_is_geometry_narrowing(pair):
    p = pair.params
    assert pair.narrowing_px == symmetric_narrowing_px(p.upper, p.lower, C)
    assert pair.narrowing_px == pytest.approx(narrowing_px(p.upper, p.lower, C), abs=0.05)
    assert p.upper.center == C and p.lower.center == C


@pytest.mark.parametrize("n", [-0.8, 0.0, 0.37, 1.0])
def test_sampled_narrowing_is_exact(n):
    # relative rotation included: the drawn narrowing is still exactly the true one
    p = sample_params(np.random.default_rng(5), narrowing_px=(n, n), relative_rotation_deg=2.0)
    assert narrowing_px(p.upper, p.lower, C) == pytest.approx(n, abs=1e-9)


def test_narrowing_of_pure_translations(params):
    up = Similarity(1.0, 0.0, 0.3, 1.25, C)
    lo = Similarity(1.0, 0.0, 0.3, 0.4, C)
    pr = render(dataclasses.replace(params, upper=up, lower=lo))
    assert pr.narrowing_px == pytest.approx(up.ty - lo.ty, abs=1e-12)
    assert pr.narrowing_px == pytest.approx(0.85, abs=1e-12)


# -- rendering from moved geometry ------------------------------------------------------------
def test_identity_motion_gives_identical_followup(params):
    pr = render(_still(params))
    # both visits go through the very same computation: equal to float32 rounding
    np.testing.assert_allclose(pr.followup, pr.baseline, rtol=0, atol=1e-6)
    assert np.array_equal(pr.followup_labels, pr.baseline_labels)


@pytest.mark.parametrize("dx, dy", [(3, -2), (-5, 4)])
def test_integer_translation_shifts_the_image(params, dx, dy):
    pr = render(_still(params, Similarity(1.0, 0.0, float(dx), float(dy), C)))
    # Interior only: the blur (truncated at 4 sigma <= 6 px at sigma 1.5) and the image
    # border differ, so keep 16 px away from the border. Inside, the follow-up samples the
    # moved continuous scene on the same (supersampled) grid shifted by whole pixels, and
    # the blur is shift-equivariant, so the only difference is float rounding of the
    # coordinates (~1e-13 px) and of the float32 output (~6e-8): tolerance 1e-5.
    m = 16
    rows, cols = SHAPE
    base = pr.baseline[m:rows - m, m:cols - m]
    moved = pr.followup[m + dy:rows - m + dy, m + dx:cols - m + dx]
    np.testing.assert_allclose(moved, base, rtol=0, atol=1e-5)
    lab_b = pr.baseline_labels[m:rows - m, m:cols - m]
    lab_f = pr.followup_labels[m + dy:rows - m + dy, m + dx:cols - m + dx]
    assert np.mean(lab_b != lab_f) < 1e-3  # only exact ties could differ


def test_subpixel_translation_matches_interpolated_baseline(params):
    # Anti-aliasing check: a sub-pixel shift rendered from the moved geometry agrees with a
    # quintic-spline shift of the baseline. The supersampled render keeps the residual
    # ~2-6e-4 of the intensity range (point sampling would give ~3-7e-3); allow 2e-3.
    t = (0.37, -0.61)
    for blur in (0.7, 1.5):
        pr = render(_still(params, Similarity(1.0, 0.0, *t, C), blur_sigma_px=blur))
        yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]].astype(float)
        pred = ndimage.map_coordinates(pr.baseline.astype(float), [yy - t[1], xx - t[0]],
                                       order=5, mode="reflect")
        d = (pr.followup - pred)[16:-16, 16:-16]
        assert np.sqrt(np.mean(d ** 2)) < 2e-3 * np.ptp(pr.baseline)


# -- labels ----------------------------------------------------------------------------------
def test_labels_split_the_joint_through_the_gap(pair):
    p = pair.params
    for lab in (pair.baseline_labels, pair.followup_labels):
        assert set(np.unique(lab)) == {1, 2}
    lab = pair.baseline_labels
    assert np.all(lab[pair.upper_mask] == 1) and np.all(lab[pair.lower_mask] == 2)
    # boundary pixels: label changes between vertical or horizontal neighbours
    bnd = np.zeros(lab.shape, bool)
    bnd[:-1] |= lab[:-1] != lab[1:]
    bnd[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    img = pair.baseline
    assert img[bnd].mean() < img[pair.upper_mask].mean()
    assert img[bnd].mean() < img[pair.lower_mask].mean()
    # at the centre column the boundary lies within the gap, at the crop centre row
    col = int(round(C[0]))
    row = int(np.flatnonzero(lab[:, col] == 2)[0])
    assert abs(row - 0.5 - C[1]) <= p.bone.gap_px / 2.0
    assert not pair.upper_mask[row - 1:row + 1, col].any()
    assert not pair.lower_mask[row - 1:row + 1, col].any()


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize("group, field, value", [
    ("bone", "gap_px", 0.0), ("bone", "gap_px", -2.0), ("bone", "gap_px", float("nan")), ("bone", "gap_px", 100.0),
    ("acquisition", "noise_sigma", -0.1), ("acquisition", "blur_sigma_px", -1.0), ("acquisition", "gain", 0.0),
    ("bone", "cortex_px", 0.0), (None, "shape", (16, 16)), (None, "shape", (256,)),
    ("acquisition", "supersample", 0), ("texture", "seed", -1),
])
def test_params_validation_names_the_field(group, field, value):
    """A bad value is refused naming its field, whether by its group or (gap_px against the
    crop's rows) by PhantomParams."""
    kinds = {"bone": BoneShape, "texture": Texture, "acquisition": Acquisition}
    with pytest.raises(ValueError, match=field):
        PhantomParams(**({field: value} if group is None else {group: kinds[group](**{field: value})}))


@pytest.mark.parametrize("kw, name", [
    (dict(noise=-0.01), "noise"), (dict(narrowing_px=(1.0, -1.0)), "narrowing_px"),
    (dict(shape=(8, 8)), "shape"), (dict(exposure=1.5), "exposure"),
    (dict(blur=(-1.0, 1.0)), "blur"), (dict(max_scale=-0.1), "max_scale"),
])
def test_sample_params_validation(kw, name):
    with pytest.raises(ValueError, match=name):
        sample_params(np.random.default_rng(0), **kw)


# -- apply_bone_motions -------------------------------------------------------------------------
def _split_labels(shape, boundary_row):
    lab = np.full(shape, 2, np.uint8)
    lab[:boundary_row] = 1
    return lab


def test_apply_bone_motions_identity_returns_the_image():
    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.random((96, 112)), 2.0).astype(np.float32)
    lab = _split_labels(img.shape, 48)
    c = crop_centre(img.shape)
    out = apply_bone_motions(img, lab, Similarity.identity(c), Similarity.identity(c))
    assert out.dtype == np.float32 and out.shape == img.shape
    # pre-images are exactly the pixel centres; quintic interpolation at the nodes
    # reproduces the samples to float rounding
    np.testing.assert_allclose(out, img, rtol=0, atol=1e-6)


def test_apply_bone_motions_equal_integer_translation_shifts_exactly():
    rng = np.random.default_rng(1)
    img = ndimage.gaussian_filter(rng.random((96, 112)), 1.5)
    lab = _split_labels(img.shape, 40)
    lab[10:20, 10:20] = 0  # label-0 pixels move with the blended (here: common) motion
    c = crop_centre(img.shape)
    dx, dy = 2, -3
    t = Similarity(1.0, 0.0, float(dx), float(dy), c)
    out = apply_bone_motions(img, lab, t, t)
    assert out.dtype == np.float64
    m = 8
    np.testing.assert_allclose(out[m:-m, m:-m], img[m - dy:-m - dy, m - dx:-m - dx],
                               rtol=0, atol=1e-9)


def test_apply_bone_motions_moves_each_side_with_its_bone():
    shape = (128, 128)
    c = crop_centre(shape)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    sigma = 2.5
    centres = [(x, y) for y in (20.3, 44.6) for x in (30.2, 63.7, 97.1)]
    centres += [(x, y) for y in (83.4, 106.9) for x in (29.6, 64.2, 98.8)]
    img = np.zeros(shape)
    for x, y in centres:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    # boundary at row 63.5; blobs >= 19 px from it (> blend_px + 4 sigma) and >= 23 px from
    # each other (the +-11 px centroid windows see no neighbour)
    lab = _split_labels(shape, 64)
    upper = Similarity(1.01, 0.02, 1.3, -0.7, c)
    lower = Similarity(0.99, -0.015, -0.8, 1.1, c)
    out = apply_bone_motions(img, lab, upper, lower, blend_px=4.0)
    # A Gaussian blob moved by a similarity is an isotropic Gaussian centred at the moved
    # centre, and the discrete centroid of a sampled Gaussian with sigma >= 2 px is exact to
    # ~1e-8 px (window +-11 px > 4 sigma truncates ~1e-6). What is left is the quintic
    # interpolation error (~1e-4 px), so 0.02 px is a generous bound -- yet 50x smaller
    # than the ~1-3 px between where the two motions would put a blob.
    for x, y in centres:
        side = upper if y < 64 else lower
        other = lower if y < 64 else upper
        exp = side.apply(np.array([x, y]))
        assert np.linalg.norm(exp - other.apply(np.array([x, y]))) > 1.0
        r0, c0 = int(round(exp[1])), int(round(exp[0]))
        win = out[r0 - 11:r0 + 12, c0 - 11:c0 + 12]
        wy, wx = np.mgrid[r0 - 11:r0 + 12, c0 - 11:c0 + 12]
        got = np.array([(win * wx).sum(), (win * wy).sum()]) / win.sum()
        assert np.linalg.norm(got - exp) < 0.02, (x, y, got, exp)


def test_default_blend_is_rigid_outside_the_engines_gap_band():
    """With the default ``blend_px`` the pixels that the engine's fits keep (farther than
    ``RegistrationOptions.gap_exclusion_px`` from the other side) move with their own bone:
    exactly (to 1e-6 of the relative motion) along a straight split, and with a weight of at
    least 0.95 at a step of the split, where distances between 3 and 4 px occur. A blend of 4
    (the default before issue 23) gives the kept pixels weights down to 0.79 there. Pixels
    nearer the split still blend, so the inverse map stays a contraction."""
    from jsnq.labels import side_masks
    from jsnq.register.options import RegistrationOptions

    band = RegistrationOptions().gap_exclusion_px
    m = 4  # the distance transforms see the array's edge as no boundary
    straight = _split_labels((64, 80), 32)
    stepped = straight.copy()
    stepped[:, 60:] = np.where(np.arange(64)[:, None] < 36, 1, 2)
    for lab, lowest in ((straight, 1.0 - 1e-6), (stepped, 0.95)):
        kept_up, kept_lo = side_masks(lab, band)
        inner = np.zeros(lab.shape, bool)
        inner[m:-m, m:-m] = True
        w = side_weight(lab, BLEND_PX)
        assert w[kept_up & inner].min() >= lowest and 1.0 - w[kept_lo & inner].max() >= lowest
        assert 0.0 < w[31, 10] < 1.0 and 0.0 < w[32, 10] < 1.0
    kept_up, _ = side_masks(stepped, band)
    assert side_weight(stepped, 4.0)[kept_up & inner].min() < 0.85


def test_apply_bone_motions_validation():
    img = np.zeros((64, 64))
    c = crop_centre(img.shape)
    ident = Similarity.identity(c)
    with pytest.raises(ValueError, match="labels"):
        apply_bone_motions(img, np.ones((64, 64), np.uint8), ident, ident)  # one side only
    with pytest.raises(ValueError, match="shape"):
        apply_bone_motions(img, _split_labels((32, 64), 16), ident, ident)
    with pytest.raises(ValueError, match="blend_px"):
        apply_bone_motions(img, _split_labels(img.shape, 32), ident, ident, blend_px=0.0)
