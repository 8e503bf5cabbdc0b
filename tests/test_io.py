"""Tests for jsnq.io: every reader, the validation errors, label maps, and one real crop."""

from __future__ import annotations

import csv
import io as bytes_io
import math
import os

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from jsnq.errors import JsnqInputError
from jsnq.io import (
    MAX_CROP_SIDE_PX,
    MAX_IMAGE_PIXELS,
    Image,
    check_crop_size,
    common_spacing,
    load_image,
    load_labels,
    save_labels,
    validate_spacing,
)

ROWS, COLS = 48, 64  # non-square, so a transposed read cannot pass
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def smooth(maximum: int = 255, dtype=np.uint8) -> np.ndarray:
    """A smooth, non-constant [row, col] test image spanning 0..maximum (JPEG-friendly)."""
    r, c = np.mgrid[0:ROWS, 0:COLS]
    v = 0.5 + 0.3 * np.sin(r / 7.0) * np.cos(c / 9.0) + 0.2 * (c / (COLS - 1) - 0.5)
    v = (v - v.min()) / (v.max() - v.min())
    return np.round(v * maximum).astype(dtype)


def write_dicom(path, pixels, *, photometric="MONOCHROME2", bits=None, syntax=None, **elements):
    """A minimal valid CR dataset holding ``pixels``; ``syntax`` compresses it with pydicom."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.set_pixel_data(pixels, photometric, bits or 8 * pixels.dtype.itemsize)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if syntax is not None:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


def save_pillow(path, pixels, **kwargs):
    PILImage.fromarray(pixels).save(path, **kwargs)
    return path


# -- every format round-trips -----------------------------------------------------------


def _grey_rgb(pixels):
    return np.repeat(pixels[..., None], 3, axis=-1)


ROUND_TRIPS = {
    "png8": (lambda p, a: save_pillow(p / "x.png", a), smooth()),
    "png16": (lambda p, a: save_pillow(p / "x.png", a), smooth(60000, np.uint16)),
    "bmp": (lambda p, a: save_pillow(p / "x.bmp", a), smooth()),
    "tiff8": (lambda p, a: tifffile.imwrite(p / "x.tif", a) or p / "x.tif", smooth()),
    "tiff16": (lambda p, a: tifffile.imwrite(p / "x.tif", a) or p / "x.tif", smooth(60000, np.uint16)),
    "tiff_float": (lambda p, a: tifffile.imwrite(p / "x.tif", a) or p / "x.tif", smooth(1000).astype(np.float32) / 7),
    # Pillow's LZW path: tifffile cannot decode LZW without imagecodecs, so the reader falls back
    "tiff16_lzw": (lambda p, a: save_pillow(p / "x.tif", a, compression="tiff_lzw"), smooth(60000, np.uint16)),
    "tiff_miniswhite": (
        lambda p, a: tifffile.imwrite(p / "x.tif", a.max() + a.min() - a, photometric="miniswhite") or p / "x.tif",
        smooth(),
    ),
    "rgb_png": (lambda p, a: save_pillow(p / "x.png", _grey_rgb(a)), smooth()),
    "rgba_png": (
        lambda p, a: save_pillow(p / "x.png", np.dstack([_grey_rgb(a), np.full_like(a, 200)])),
        smooth(),
    ),
    "rgb_tiff": (lambda p, a: tifffile.imwrite(p / "x.tif", _grey_rgb(a)) or p / "x.tif", smooth()),
    "png_named_jpg": (lambda p, a: save_pillow(p / "x.jpg", a, format="PNG"), smooth()),  # content wins
    "png_named_dcm": (lambda p, a: save_pillow(p / "x.dcm", a, format="PNG"), smooth()),
}


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_lossless_formats_round_trip(tmp_path, case):
    write, expected = ROUND_TRIPS[case]
    image = load_image(write(tmp_path, expected))
    assert image.array.dtype == np.float32 and image.array.flags.c_contiguous
    assert image.array.shape == (ROWS, COLS)
    np.testing.assert_array_equal(image.array, expected.astype(np.float32))
    assert image.spacing_mm is None and image.meta["spacing_source"] is None


def test_jpeg_round_trip(tmp_path):
    expected = smooth()
    path = save_pillow(tmp_path / "x.jpg", expected, quality=95)
    image = load_image(path)
    assert image.meta["format"] == "JPEG"
    np.testing.assert_array_equal(image.array, np.asarray(PILImage.open(path)))  # same decoder: exact
    # Lossy: quality 95 on this smooth image stays within a few grey levels of the original.
    assert np.abs(image.array - expected).max() <= 4


def test_rgb_jpeg_like_noise_is_accepted_and_averaged(tmp_path):
    grey = smooth().astype(np.int16)
    rgb = np.dstack([grey, grey + 3, grey - 2]).clip(0, 255).astype(np.uint8)
    rgb[0, :20] = (0, 40, 0)  # a few chroma outliers (20 px = 0.65%, under the 1% allowance)
    image = load_image(save_pillow(tmp_path / "x.png", rgb))
    np.testing.assert_allclose(image.array, rgb.astype(np.float64).mean(axis=-1), atol=1e-4)


def test_numpy_arrays(tmp_path):
    pixels = smooth(4000, np.uint16)
    image = load_image(pixels)
    assert image.source == "<array>" and image.meta["format"] == "array"
    np.testing.assert_array_equal(image.array, pixels)
    assert load_image(pixels, name="baseline").source == "baseline"
    np.testing.assert_array_equal(load_image(_grey_rgb(pixels)).array, pixels)
    fortran = np.asfortranarray(pixels.astype(np.float64))
    assert load_image(fortran).array.flags.c_contiguous


def test_image_input_is_passed_through_with_overrides():
    image = load_image(smooth(), spacing_mm=0.1)
    again = load_image(image, spacing_mm=0.2, name="renamed")
    assert again.spacing_mm == 0.2 and again.meta["spacing_source"] == "caller"
    assert again.source == "renamed" and again.array is image.array
    assert load_image(image).spacing_mm == 0.1


# -- DICOM -------------------------------------------------------------------------------


def test_dicom_uncompressed_monochrome2(tmp_path):
    pixels = smooth(4095, np.uint16)
    image = load_image(write_dicom(tmp_path / "cr.dcm", pixels, bits=12, PixelSpacing=[0.1, 0.1]))
    np.testing.assert_array_equal(image.array, pixels)
    assert image.spacing_mm == pytest.approx(0.1)
    assert image.meta["format"] == "DICOM" and image.meta["bits"] == 12
    assert image.meta["photometric"] == "MONOCHROME2" and image.meta["spacing_source"] == "PixelSpacing"


def test_dicom_monochrome1_is_inverted(tmp_path):
    pixels = smooth(4095, np.uint16)
    image = load_image(write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1", bits=12))
    np.testing.assert_array_equal(image.array, int(pixels.max()) + int(pixels.min()) - pixels.astype(np.int32))


def test_dicom_imager_pixel_spacing_fallback_and_rescale(tmp_path):
    pixels = smooth(4095, np.uint16)
    path = write_dicom(
        tmp_path / "dx.dcm", pixels, ImagerPixelSpacing=[0.15, 0.1505], RescaleSlope=2, RescaleIntercept=-100
    )
    image = load_image(path)
    assert image.meta["spacing_source"] == "ImagerPixelSpacing"
    assert image.spacing_mm == pytest.approx(0.15025)  # within 1%: mean of row and col
    np.testing.assert_array_equal(image.array, pixels.astype(np.float32) * 2 - 100)


def test_dicom_without_preamble_or_file_meta(tmp_path):
    pixels = smooth(4095, np.uint16)
    ds = pydicom.dcmread(write_dicom(tmp_path / "full.dcm", pixels))
    del ds.file_meta
    ds.save_as(tmp_path / "raw.dcm", implicit_vr=True, little_endian=True)
    np.testing.assert_array_equal(load_image(tmp_path / "raw.dcm").array, pixels)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless], ids=lambda s: s.name)
def test_dicom_lossless_compression_is_exact(tmp_path, syntax):
    pixels = smooth(4095, np.uint16)
    image = load_image(write_dicom(tmp_path / "c.dcm", pixels, bits=12, syntax=syntax))
    assert image.meta["transfer_syntax"] == syntax.name
    np.testing.assert_array_equal(image.array, pixels)


def test_dicom_jpeg_baseline(tmp_path):
    pixels = smooth()
    buffer = bytes_io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    path = write_dicom(tmp_path / "jpeg.dcm", pixels, bits=8)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    ds.save_as(path, enforce_file_format=True)

    image = load_image(path)
    assert image.meta["transfer_syntax"] == JPEGBaseline8Bit.name
    # pydicom decodes with libjpeg (pylibjpeg), Pillow with libjpeg-turbo: their IDCTs may
    # round differently, so allow 2 levels against Pillow's decoding of the same bytes ...
    reference = np.asarray(PILImage.open(bytes_io.BytesIO(buffer.getvalue())), dtype=np.float32)
    assert np.abs(image.array - reference).max() <= 2
    # ... and the lossy quality-95 encoding itself a few levels against the original.
    assert np.abs(image.array - pixels).max() <= 6


# -- spacing -----------------------------------------------------------------------------


def test_spacing_override(tmp_path):
    path = write_dicom(tmp_path / "s.dcm", smooth(4095, np.uint16), PixelSpacing=[0.1, 0.1])
    image = load_image(path, spacing_mm=0.2)
    assert image.spacing_mm == 0.2 and image.meta["spacing_source"] == "caller"
    png = save_pillow(tmp_path / "s.png", smooth())
    assert load_image(png, spacing_mm=0.05).spacing_mm == 0.05
    # the caller's spacing replaces the file's tags, even anisotropic ones
    aniso = write_dicom(tmp_path / "a.dcm", smooth(4095, np.uint16), PixelSpacing=[0.1, 0.2])
    assert load_image(aniso, spacing_mm=0.1).spacing_mm == 0.1


@pytest.mark.parametrize("value", [0.0, 0.01, -0.1, 5.01, 100.0, math.nan, math.inf])
def test_absurd_spacing(value):
    with pytest.raises(JsnqInputError, match=r"absurd pixel spacing .* mm \(expected 0.01-5 mm\)"):
        validate_spacing(value, "x.png")
    with pytest.raises(JsnqInputError, match="absurd pixel spacing"):
        load_image(smooth(), spacing_mm=value)


def test_valid_spacing():
    assert validate_spacing(None, "x") is None
    assert validate_spacing(5.0, "x") == 5.0
    assert validate_spacing(np.float32(0.1), "x") == pytest.approx(0.1)
    with pytest.raises(JsnqInputError, match="invalid pixel spacing"):
        validate_spacing("abc", "x")


# -- bad input: one line naming the file and the problem ------------------------------------


def _bytes(path, data: bytes):
    path.write_bytes(data)
    return path


def _truncated(path, write):
    write(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD_FILES = {
    "missing": (lambda p: p / "missing.png", "file not found"),
    "directory": (lambda p: (p / "folder.png").mkdir() or p / "folder.png", "is a directory"),
    "empty": (lambda p: _bytes(p / "empty.png", b""), "cannot read image: file is empty"),
    "garbage": (lambda p: _bytes(p / "garbage.png", bytes(range(256)) * 4), "cannot read image: unrecognised"),
    "truncated_png": (lambda p: _truncated(p / "cut.png", lambda q: save_pillow(q, smooth())), "cannot read image"),
    "truncated_jpeg": (lambda p: _truncated(p / "cut.jpg", lambda q: save_pillow(q, smooth())), "cannot read image"),
    "truncated_tiff": (
        lambda p: _truncated(p / "cut.tif", lambda q: tifffile.imwrite(q, smooth(60000, np.uint16))),
        "cannot read image",
    ),
    "truncated_dicom": (
        lambda p: _truncated(p / "cut.dcm", lambda q: write_dicom(q, smooth(4095, np.uint16))),
        "cannot read image",
    ),
    "tiff_stack": (
        lambda p: tifffile.imwrite(p / "stack.tif", np.stack([smooth(), smooth()])) or p / "stack.tif",
        f"image is not 2-D (shape (2, {ROWS}, {COLS}))",
    ),
    "multiframe_dicom": (
        lambda p: write_dicom(p / "frames.dcm", np.stack([smooth(4095, np.uint16)] * 3)),
        f"image is not 2-D (shape (3, {ROWS}, {COLS}))",
    ),
    "blank": (lambda p: save_pillow(p / "blank.png", np.full((32, 32), 7, np.uint8)), "image is blank (constant value 7)"),
    "too_small": (lambda p: save_pillow(p / "small.png", smooth()[:10]), "image is too small (10x64 px"),
    "nan": (
        lambda p: tifffile.imwrite(p / "nan.tif", np.where(smooth() > 100, np.nan, 1).astype(np.float32))
        or p / "nan.tif",
        "image contains NaN or infinite values",
    ),
    "colour": (
        lambda p: save_pillow(p / "colour.png", np.dstack([smooth(), smooth()[::-1], smooth()[:, ::-1]])),
        "image is colour, not greyscale",
    ),
    "absurd_file_spacing": (
        lambda p: write_dicom(p / "zero.dcm", smooth(4095, np.uint16), PixelSpacing=[0, 0]),
        "absurd pixel spacing 0 mm (expected 0.01-5 mm)",
    ),
    "anisotropic": (
        lambda p: write_dicom(p / "aniso.dcm", smooth(4095, np.uint16), PixelSpacing=[0.1, 0.2]),
        "anisotropic pixel spacing (0.1 x 0.2 mm) is not supported",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_raise_one_line_naming_the_file(tmp_path, case):
    make, problem = BAD_FILES[case]
    path = make(tmp_path)
    with pytest.raises(JsnqInputError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and path.name in message
    assert problem in message
    assert "\n" not in message


BAD_ARRAYS = {
    "1d": (np.arange(100.0), "image is not 2-D (shape (100,))"),
    "channels_first": (np.stack([smooth()] * 3), f"image is not 2-D (shape (3, {ROWS}, {COLS}))"),
    "complex": (smooth().astype(np.complex64), "image has non-numeric pixel type complex64"),
    "object": (smooth().astype(object), "image has non-numeric pixel type object"),
    "inf": (np.where(smooth() > 100, np.inf, 0.0), "image contains NaN or infinite values"),
    "blank": (np.zeros((20, 20)), "image is blank (constant value 0)"),
}


@pytest.mark.parametrize("case", BAD_ARRAYS)
def test_bad_arrays(case):
    pixels, problem = BAD_ARRAYS[case]
    with pytest.raises(JsnqInputError) as info:
        load_image(pixels, name="scan7")
    assert str(info.value) == f"scan7: {problem}"


# -- labels ------------------------------------------------------------------------------


def label_map() -> np.ndarray:
    labels = np.zeros((ROWS, COLS), np.uint8)
    labels[: ROWS // 2 - 2] = 1
    labels[ROWS // 2 + 2 :] = 2
    return labels


def test_labels_round_trip(tmp_path):
    save_labels(tmp_path / "labels.png", label_map())
    labels = load_labels(tmp_path / "labels.png", shape=(ROWS, COLS))
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, label_map())
    np.testing.assert_array_equal(load_labels(label_map().astype(float), shape=(ROWS, COLS)), label_map())


def test_split_mask(tmp_path):
    split = np.where(np.arange(ROWS)[:, None] < 20, 255, 0).astype(np.uint8).repeat(COLS, axis=1)
    expected = np.where(split > 0, 1, 2)
    path = save_pillow(tmp_path / "split.png", split)
    np.testing.assert_array_equal(load_labels(path, shape=(ROWS, COLS), split_mask=True), expected)
    np.testing.assert_array_equal(load_labels(split > 0, shape=(ROWS, COLS), split_mask=True), expected)


BAD_LABELS = {
    "shape": (label_map(), {"shape": (COLS, ROWS)}, f"labels are {ROWS}x{COLS} but the image is {COLS}x{ROWS}"),
    "no_upper": (np.where(label_map() == 1, 0, label_map()), {}, "labels lack the upper bone side (value 1)"),
    "no_lower": (np.where(label_map() == 2, 0, label_map()), {}, "labels lack the lower bone side (value 2)"),
    "split_all_upper": (np.full((ROWS, COLS), 255, np.uint8), {"split_mask": True}, "lack the lower bone side"),
    "unexpected": (label_map() * 3, {}, "labels contain unexpected values 3, 6 (expected 0, 1, 2)"),
    "binary_255": (label_map().clip(0, 1) * 255, {}, "unexpected values 255 (expected 0, 1, 2); a 0/255"),
}


@pytest.mark.parametrize("case", BAD_LABELS)
def test_bad_labels(tmp_path, case):
    values, kwargs, problem = BAD_LABELS[case]
    path = save_pillow(tmp_path / f"{case}.png", values.astype(np.uint8))
    kwargs = {"shape": (ROWS, COLS), **kwargs}
    with pytest.raises(JsnqInputError) as info:
        load_labels(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_labels_file_missing_and_bad_save(tmp_path):
    with pytest.raises(JsnqInputError, match="nope.png: file not found"):
        load_labels(tmp_path / "nope.png", shape=(ROWS, COLS))
    with pytest.raises(JsnqInputError, match="out.png: labels to save"):
        save_labels(tmp_path / "out.png", label_map() * 3)


def test_image_dataclass_coerces_and_checks():
    image = Image(np.ones((20, 30), np.float64), None, "direct")
    assert image.array.dtype == np.float32 and image.shape == (20, 30)
    with pytest.raises(JsnqInputError, match="direct: image is not 2-D"):
        Image(np.ones((2, 20, 30)), None, "direct")
    with pytest.raises(JsnqInputError, match="absurd pixel spacing"):
        Image(np.ones((20, 30)), 0.0, "direct")


# -- real data (../shared/data; skipped when absent) -------------------------------------------


def test_real_finger_joint_crop(shared_data):
    manifest = shared_data / "finger-joints" / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"{manifest} not found: real-data test skipped")
    with manifest.open(newline="") as fh:
        row = next(csv.DictReader(fh))
    folder = shared_data / "finger-joints"
    image = load_image(folder / row["image"])
    assert image.array.shape == (256, 256) and image.array.dtype == np.float32
    assert image.meta["format"] == "JPEG" and image.meta["photometric"] == "RGB"  # RGB JPEG encoding grey
    assert image.spacing_mm is None
    upper = load_image(folder / row["upper_mask"]).array > 0
    lower = load_image(folder / row["lower_mask"]).array > 0
    assert upper.shape == lower.shape == image.array.shape and upper.any() and lower.any()
    labels = np.where(upper, 1, np.where(lower, 2, 0))
    np.testing.assert_array_equal(load_labels(labels, shape=image.array.shape), labels)


def test_real_sample_pair_split_mask(shared_data):
    folder = shared_data / "sample-pair"
    if not (folder / "fixed_split.png").is_file():
        pytest.skip(f"{folder} not found: real-data test skipped")
    image = load_image(folder / "fixed.png", spacing_mm=0.175)
    labels = load_labels(folder / "fixed_split.png", shape=image.array.shape, split_mask=True)
    assert image.array.shape == labels.shape == (127, 127)
    assert set(np.unique(labels).tolist()) == {1, 2}


# -- crashes found by the fuzz tests (tests/test_fuzz.py): one regression test each ---------------


def test_boolean_rgb_array_is_read_as_grey():
    # Found by fuzzing: a (rows, cols, 2|3|4) bool array raised numpy's TypeError
    # ("boolean subtract is not supported") from the grey check.
    mask = smooth() > 100
    np.testing.assert_array_equal(load_image(np.dstack([mask] * 3)).array, mask.astype(np.float32))
    labels = load_labels(np.dstack([mask, np.ones_like(mask)]), shape=mask.shape, split_mask=True)
    np.testing.assert_array_equal(labels, np.where(mask, 1, 2))


def test_values_beyond_float32_are_refused():
    # float64 pixels over float32's range used to come back as inf, in an Image documented finite.
    pixels = smooth().astype(np.float64)
    pixels[0, 0] = 1e300
    with pytest.raises(JsnqInputError) as info:
        load_image(pixels, name="huge")
    assert str(info.value) == "huge: image values exceed the float32 range (|value| > 3.4e+38)"


def test_inverting_near_float32_max_does_not_overflow(tmp_path):
    # MINISWHITE inversion max + min - value overflowed in float32 to an all-inf image.
    pixels = (1e38 + smooth().astype(np.float32) * 8e35).astype(np.float32)
    path = tmp_path / "white.tif"
    tifffile.imwrite(path, pixels, photometric="miniswhite")
    image = load_image(path)
    assert np.isfinite(image.array).all()
    expected = (float(pixels.max()) + float(pixels.min())) - pixels.astype(np.float64)
    np.testing.assert_allclose(image.array, expected, rtol=1e-6)


def _tiff_claiming(path, rows: int, cols: int):
    """A 1-strip float32 TIFF whose header claims rows x cols but which holds 8 bytes of data."""
    import struct

    tags = [(256, 4, cols), (257, 4, rows), (258, 3, 32), (259, 3, 1), (262, 3, 1), (273, 4, 8),
            (277, 3, 1), (278, 4, rows), (279, 4, 8), (339, 3, 3)]
    ifd_at = 16
    data = b"II*\x00" + struct.pack("<I", ifd_at) + b"\x00" * 8
    data += struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        data += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
    path.write_bytes(data + b"\x00" * 4)
    return path


def test_tiff_header_claiming_a_huge_image_is_refused_before_decoding(tmp_path):
    # Found by fuzzing: one corrupted byte in a TIFF's ImageWidth made tifffile allocate
    # 24 GiB, and load_image died with MemoryError.
    import time

    path = _tiff_claiming(tmp_path / "bomb.tif", 100_000, 60_000)
    start = time.perf_counter()
    with pytest.raises(JsnqInputError) as info:
        load_image(path)
    assert time.perf_counter() - start < 1.0
    assert str(info.value).startswith(f"{path}: image is 100000x60000 px; jsnq reads radiographs of at most")


# -- size limits (jsnq.limits): refused from the header, before decoding ---------------------------


def _png_claiming(path, rows: int, cols: int):
    """A PNG holding only its IHDR header (rows x cols, 8-bit grey) and IEND: a few dozen bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def _refused_quickly(call, *, seconds: float = 1.0) -> str:
    import time

    start = time.perf_counter()
    with pytest.raises(JsnqInputError) as info:
        call()
    assert time.perf_counter() - start < seconds
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("rows, cols", [(9000, 9000), (40_000, 40_000), (20, 20_000)])
def test_png_header_over_the_image_limit_is_refused_before_decoding(tmp_path, rows, cols):
    # 40000 x 40000 is over Pillow's own decompression-bomb limit, which raises first
    path = _png_claiming(tmp_path / "big.png", rows, cols)
    message = _refused_quickly(lambda: load_image(path))
    assert message.startswith(f"{path}: image is ")
    assert f"jsnq reads radiographs of at most {MAX_IMAGE_PIXELS} px" in message


def test_dicom_tags_over_the_image_limit_are_refused_before_decoding(tmp_path):
    path = write_dicom(tmp_path / "big.dcm", smooth(4095, np.uint16))
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 60000, 60000
    ds.save_as(path, enforce_file_format=True)
    message = _refused_quickly(lambda: load_image(path))
    assert message.startswith(f"{path}: image is 60000x60000 px; jsnq reads radiographs of at most")


def test_arrays_over_the_image_limit_are_refused():
    huge = np.broadcast_to(np.float32(0), (9000, 9000))  # no memory behind it
    message = _refused_quickly(lambda: load_image(huge, name="big"))
    assert message.startswith("big: image is 9000x9000 px; jsnq reads radiographs")


def test_file_over_the_byte_limit_is_refused_unread(tmp_path):
    from jsnq.limits import MAX_FILE_BYTES

    path = _png_claiming(tmp_path / "padded.png", 64, 64)
    os.truncate(path, MAX_FILE_BYTES + 1)  # sparse: costs no disk
    message = _refused_quickly(lambda: load_image(path))
    assert message == f"{path}: file is 1024 MiB; jsnq reads image files of at most 1024 MiB"


def test_whole_hand_sized_image_is_accepted():
    # 4000 x 5000 px, the largest whole-hand radiographs in practice, pass the image limit
    from jsnq.limits import check_image_size

    check_image_size(5000, 4000, source="hand.png")
    check_image_size(8192, 8192, source="hand.png")
    with pytest.raises(JsnqInputError, match="hand.png: image is 8193x8192 px"):
        check_image_size(8193, 8192, source="hand.png")


def test_crop_limit_from_the_header_before_decoding(tmp_path):
    # The case: an 8000 x 8000 PNG given to measure / segment. With crop=True the
    # header alone refuses it (the file here has no pixel data at all, so decoding would fail).
    path = _png_claiming(tmp_path / "hand.png", 8000, 8000)
    message = _refused_quickly(lambda: load_image(path, crop=True))
    assert message == (f"{path}: image is 8000x8000 px; joint crops are at most {MAX_CROP_SIDE_PX} px a side "
                       "(the shipped crops are 256 px): cut a crop around one joint first")


def test_check_crop_size():
    at_limit = np.broadcast_to(np.float32(0), (MAX_CROP_SIDE_PX, 300))
    check_crop_size(at_limit)
    check_crop_size(load_image(smooth()))
    with pytest.raises(JsnqInputError) as info:
        check_crop_size(np.broadcast_to(np.float32(0), (300, MAX_CROP_SIDE_PX + 1)), source="wide.png")
    assert str(info.value).startswith(f"wide.png: image is 300x{MAX_CROP_SIDE_PX + 1} px; joint crops are at most")
    image = load_image(np.tile(smooth(), (25, 20)), name="tiled")  # 1200 x 1280: a radiograph, not a crop
    with pytest.raises(JsnqInputError, match=r"^tiled: image is 1200x1280 px; joint crops"):
        check_crop_size(image)
    with pytest.raises(JsnqInputError, match=r"^tiled: image is 1200x1280 px; joint crops"):
        load_image(image, crop=True)
    with pytest.raises(JsnqInputError, match=r"^<array>: image is 1200x1280 px; joint crops"):
        load_image(np.tile(smooth(), (25, 20)), crop=True)
    assert MAX_CROP_SIDE_PX >= 4 * 256  # headroom over the shipped crops


# -- the spacing two visits share (common_spacing) -----------------------------------------------------


def _visit(name, spacing):
    return load_image(smooth(), name=name, spacing_mm=spacing)


def test_common_spacing_agreeing_or_absent():
    assert common_spacing(_visit("b.png", None), _visit("f.png", None)) is None
    assert common_spacing(_visit("b.png", 0.1), _visit("f.png", 0.1)) == 0.1
    assert common_spacing(_visit("b.png", 0.1), _visit("f.png", 0.1009)) == 0.1  # within 1 %


@pytest.mark.parametrize("base, fol, missing, role", [(0.1, None, "f.png", "follow-up"),
                                                      (None, 0.1, "b.png", "baseline")])
def test_common_spacing_refuses_one_visit_without_spacing(base, fol, missing, role):
    # Used to be silent: the known spacing was applied to both visits.
    with pytest.raises(JsnqInputError) as info:
        common_spacing(_visit("b.png", base), _visit("f.png", fol))
    message = str(info.value)
    assert message.startswith(f"{missing}: the {role} has no pixel spacing but the ") and "0.1 mm" in message
    assert "\n" not in message


def test_common_spacing_refuses_a_mismatch_over_one_percent():
    with pytest.raises(JsnqInputError, match=r"^f.png: pixel spacing 0.102 mm differs from the baseline's 0.1 mm"):
        common_spacing(_visit("b.png", 0.1), _visit("f.png", 0.102))


def test_common_spacing_explicit_overrides_both():
    assert common_spacing(_visit("b.png", 0.1), _visit("f.png", None), spacing_mm=0.15) == 0.15
    assert common_spacing(_visit("b.png", 0.1), _visit("f.png", 0.2), spacing_mm=0.15) == 0.15
    assert common_spacing(_visit("b.png", None), _visit("f.png", None), spacing_mm=0.15) == 0.15
    with pytest.raises(JsnqInputError, match="absurd pixel spacing"):
        common_spacing(_visit("b.png", None), _visit("f.png", None), spacing_mm=0.0)
