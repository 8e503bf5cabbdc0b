"""Fuzz tests (hypothesis) for the input side: the image, label and pairs-CSV readers.

The property everywhere: a reader either returns a valid result or raises
:class:`~jsnq.errors.JsnqInputError` whose message is one line naming the source. No other
exception type, and no hang (each example runs under a deadline).

The settings are deterministic (``derandomize=True``, no example database), so CI sees the
same examples on every run; the example counts keep the whole file to a few seconds. To fuzz
harder locally, set ``JSNQ_FUZZ_EXAMPLES`` (e.g. ``JSNQ_FUZZ_EXAMPLES=2000``) and
``JSNQ_FUZZ_RANDOM=1`` to draw fresh examples.
"""

from __future__ import annotations

import io as bytes_io
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image as PILImage

from jsnq.batch import read_pairs
from jsnq.errors import JsnqInputError, safe_display_name
from jsnq.io import Image, load_image, load_labels

_EXAMPLES = int(os.environ.get("JSNQ_FUZZ_EXAMPLES", "0"))
_RANDOM = os.environ.get("JSNQ_FUZZ_RANDOM", "") not in ("", "0")

# Garbage files make Pillow and tifffile warn; the property under test is the exception type.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def fuzz(examples: int):
    """Deterministic, database-less settings with ``examples`` examples (or the env override)."""
    return settings(
        max_examples=_EXAMPLES or examples,
        deadline=timedelta(seconds=2),  # a hang or a decompression bomb fails instead of stalling CI
        derandomize=not _RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


SUFFIXES = ["", ".png", ".PNG", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom", ".gif", ".txt"]

HEADERS = {
    "none": b"",
    "png": b"\x89PNG\r\n\x1a\n",
    "jpeg": b"\xff\xd8\xff",
    "bmp": b"BM",
    "gif": b"GIF89a",
    "tiff_le": b"II*\x00",
    "tiff_be": b"MM\x00*",
    "bigtiff_le": b"II+\x00",
    "bigtiff_be": b"MM\x00+",
    "dicom": b"\x00" * 128 + b"DICM",
}


@pytest.fixture(scope="module")
def scratch():
    """One folder for the whole module (hypothesis re-runs a test body; tmp_path would not reset)."""
    with tempfile.TemporaryDirectory(prefix="jsnq-fuzz-") as folder:
        yield Path(folder)


def _smooth(rows: int = 24, cols: int = 32, maximum: int = 255, dtype=np.uint8) -> np.ndarray:
    r, c = np.mgrid[0:rows, 0:cols]
    v = np.sin(r / 5.0) * np.cos(c / 7.0) + c / cols
    v = (v - v.min()) / (v.max() - v.min())
    return np.round(v * maximum).astype(dtype)


def _dicom_bytes(pixels: np.ndarray, **elements) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.set_pixel_data(pixels, "MONOCHROME2", 8 * pixels.dtype.itemsize)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    buffer = bytes_io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _pillow_bytes(pixels: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = bytes_io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _tiff_bytes(pixels: np.ndarray, **kwargs) -> bytes:
    buffer = bytes_io.BytesIO()
    tifffile.imwrite(buffer, pixels, **kwargs)
    return buffer.getvalue()


# Small valid files of every format, to truncate and corrupt.
VALID = {
    "png8": _pillow_bytes(_smooth(), "PNG"),
    "png16": _pillow_bytes(_smooth(maximum=60000, dtype=np.uint16), "PNG"),
    "jpeg": _pillow_bytes(_smooth(), "JPEG", quality=90),
    "bmp": _pillow_bytes(_smooth(), "BMP"),
    "gif": _pillow_bytes(_smooth(), "GIF"),
    "tiff8": _tiff_bytes(_smooth()),
    "tiff16": _tiff_bytes(_smooth(maximum=60000, dtype=np.uint16)),
    "tiff_float": _tiff_bytes(_smooth().astype(np.float32)),
    "tiff_lzw": _pillow_bytes(_smooth(), "TIFF", compression="tiff_lzw"),
    "dicom": _dicom_bytes(_smooth(maximum=4000, dtype=np.uint16), PixelSpacing=[0.1, 0.1]),
}


def _check_outcome(call, source: str):
    """Run ``call``; pass on success or on a one-line JsnqInputError that names ``source``."""
    try:
        return call()
    except JsnqInputError as err:
        message = str(err)
        assert "\n" not in message, message
        message.encode("utf-8")  # printable on a UTF-8 stream, even for names that are not UTF-8
        assert message.startswith(f"{safe_display_name(source)}: "), message
        return None


def _write(scratch: Path, suffix: str, data: bytes) -> Path:
    path = scratch / f"fuzz{suffix}"
    path.write_bytes(data)
    return path


def _check_image(result) -> None:
    if result is None:
        return
    assert isinstance(result, Image)
    assert result.array.dtype == np.float32 and result.array.ndim == 2
    assert np.isfinite(result.array).all()
    assert min(result.array.shape) >= 16


# -- images from files ---------------------------------------------------------------------


@fuzz(150)
@given(header=st.sampled_from(sorted(HEADERS)), tail=st.binary(max_size=600), suffix=st.sampled_from(SUFFIXES))
def test_load_image_survives_header_then_garbage(scratch, header, tail, suffix):
    path = _write(scratch, suffix, HEADERS[header] + tail)
    _check_image(_check_outcome(lambda: load_image(path), str(path)))


@fuzz(150)
@given(
    kind=st.sampled_from(sorted(VALID)),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), max_size=6),
    suffix=st.sampled_from(SUFFIXES),
)
def test_load_image_survives_truncated_and_corrupted_files(scratch, kind, cut, flips, suffix):
    data = bytearray(VALID[kind])
    for where, value in flips:
        data[int(where * len(data))] = value
    data = bytes(data[: max(1, round(cut * len(data)))])
    path = _write(scratch, suffix, data)
    _check_image(_check_outcome(lambda: load_image(path), str(path)))


_PILLOW_DTYPES = {"PNG": [np.uint8, np.uint16], "BMP": [np.uint8], "TIFF": [np.uint8, np.uint16, np.float32]}


@fuzz(80)
@given(data=st.data())
def test_load_image_survives_valid_files_of_odd_shapes_and_dtypes(scratch, data):
    writer = data.draw(st.sampled_from(["PNG", "BMP", "JPEG", "tifffile", "DICOM"]))
    if writer == "tifffile":
        dtype = data.draw(st.sampled_from([np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32,
                                           np.float16, np.float32, np.float64, np.bool_]))
        shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=20))
    elif writer == "DICOM":
        dtype = data.draw(st.sampled_from([np.uint8, np.uint16, np.int16]))
        shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40))
    else:
        dtype = np.uint8 if writer in ("BMP", "JPEG") else data.draw(st.sampled_from([np.uint8, np.uint16]))
        channels = data.draw(st.sampled_from([(), (3,)] if dtype == np.uint8 else [()]))
        shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40)) + channels
    elements = hnp.from_dtype(np.dtype(dtype), allow_nan=True, allow_infinity=True) if dtype != np.bool_ else None
    pixels = data.draw(hnp.arrays(dtype, shape, elements=elements))
    if writer == "tifffile":
        try:
            payload, suffix = _tiff_bytes(pixels), ".tif"
        except Exception:  # tifffile cannot write every shape (e.g. bool (1,)): not the reader's problem
            assume(False)
    elif writer == "DICOM":
        spacing = data.draw(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
        extra = {} if spacing is None else {"PixelSpacing": [spacing, spacing]}
        payload, suffix = _dicom_bytes(pixels, **extra), ".dcm"
    else:
        payload, suffix = _pillow_bytes(pixels, writer), "." + writer.lower()
    path = _write(scratch, suffix, payload)
    _check_image(_check_outcome(lambda: load_image(path), str(path)))


@fuzz(60)
@given(name=st.binary(min_size=1, max_size=24).filter(lambda b: b"/" not in b and b"\x00" not in b
                                                      and b not in (b".", b"..")),
       content=st.sampled_from([b"", b"garbage", None]))
def test_any_file_name_gives_a_one_line_message(scratch, name, content):
    path = os.fsencode(scratch) + b"/" + name  # bytes: not necessarily UTF-8, may hold newlines
    if content is not None:
        with open(path, "wb") as fh:
            fh.write(content)
    try:
        _check_outcome(lambda: load_image(path), os.fsdecode(path))
        _check_outcome(lambda: load_labels(os.fsdecode(path), shape=(16, 16)), os.fsdecode(path))
    finally:
        if content is not None:
            os.unlink(path)


# -- images and labels from arrays -------------------------------------------------------------

_ANY_DTYPE = st.one_of(
    hnp.scalar_dtypes(), hnp.byte_string_dtypes(max_len=4), hnp.unicode_string_dtypes(max_len=4),
    st.just(np.dtype(object)),
)


@st.composite
def any_array(draw, max_dims: int = 4):
    dtype = draw(_ANY_DTYPE)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=24))
    if dtype == np.dtype(object):
        return np.empty(shape, dtype=object)
    return draw(hnp.arrays(dtype, shape))


@fuzz(120)
@given(pixels=any_array(), spacing=st.one_of(st.none(), st.floats(), st.integers(-5, 5)))
def test_load_image_survives_any_array(pixels, spacing):
    _check_image(_check_outcome(lambda: load_image(pixels, spacing_mm=spacing, name="arr"), "arr"))


@fuzz(100)
@given(
    pixels=hnp.arrays(st.sampled_from([np.float64, np.float32, np.float16]),
                      st.tuples(st.integers(16, 20), st.integers(16, 20)) | st.tuples(st.integers(16, 20),
                                                                                    st.integers(16, 20), st.just(3)),
                      elements={"allow_nan": False, "allow_infinity": False}),
    photometric=st.sampled_from(["minisblack", "miniswhite"]),
    as_file=st.booleans(),
)
def test_load_image_survives_extreme_float_values(scratch, pixels, photometric, as_file):
    if as_file:
        path = scratch / "extreme.tif"
        tifffile.imwrite(path, pixels, photometric=photometric if pixels.ndim == 2 else "rgb")
        _check_image(_check_outcome(lambda: load_image(path), str(path)))
    else:
        _check_image(_check_outcome(lambda: load_image(pixels, name="arr"), "arr"))


@fuzz(150)
@given(
    values=any_array(max_dims=3),
    shape=st.tuples(st.integers(0, 24), st.integers(0, 24)),
    split_mask=st.booleans(),
)
def test_load_labels_survives_any_array(values, shape, split_mask):
    labels = _check_outcome(lambda: load_labels(values, shape=shape, split_mask=split_mask, name="lab"), "lab")
    if labels is not None:
        assert labels.dtype == np.uint8 and labels.shape == shape
        assert set(np.unique(labels).tolist()) <= {0, 1, 2} and {1, 2} <= set(np.unique(labels).tolist())


@fuzz(100)
@given(
    values=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
                      elements=st.sampled_from([0, 1, 2, 3, 255])),
    header=st.sampled_from(["png", "tiff", "garbage"]),
    tail=st.binary(max_size=64),
    split_mask=st.booleans(),
    transpose=st.booleans(),
)
def test_load_labels_survives_files(scratch, values, header, tail, split_mask, transpose):
    if header == "png":
        payload, suffix = _pillow_bytes(values, "PNG"), ".png"
    elif header == "tiff":
        payload, suffix = _tiff_bytes(values), ".tif"
    else:
        payload, suffix = HEADERS["png"] + tail, ".png"
    path = _write(scratch, suffix, payload)
    shape = values.shape[::-1] if transpose else values.shape
    labels = _check_outcome(lambda: load_labels(path, shape=shape, split_mask=split_mask), str(path))
    if labels is not None:
        assert labels.shape == shape and labels.dtype == np.uint8


# -- the pairs CSV of measure-batch -----------------------------------------------------------------

_CSV_TOKENS = list('ab.png,"\n\r \t\x00;\ufeff\xe9') + ["baseline", "followup", "spacing_mm", "id", "0.1", "nan", "-1"]
_CSV_BODY = st.lists(st.sampled_from(_CSV_TOKENS), max_size=40).map("".join)


@fuzz(150)
@given(
    header=st.sampled_from(["baseline,followup\n", "id,baseline,followup,spacing_mm\n", "\ufeffbaseline,followup\n",
                            "followup\n", "", "baseline;followup\n"]),
    body=st.one_of(_CSV_BODY, st.binary(max_size=80)),
)
def test_read_pairs_survives_any_csv(scratch, header, body):
    path = scratch / "pairs.csv"
    path.write_bytes(header.encode("utf-8") + (body if isinstance(body, bytes) else body.encode("utf-8")))
    rows = _check_outcome(lambda: read_pairs(path), str(path))
    if rows is not None:
        assert isinstance(rows, list) and all(isinstance(row, dict) for row in rows)
