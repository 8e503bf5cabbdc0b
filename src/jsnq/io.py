"""Reading and validating radiographs and label maps; no image maths.

Conventions:

* Every array is indexed ``[row, col]`` (``shape = (rows, cols)``), as in
  :mod:`jsnq.geometry`.
* Pixel values are returned as stored in the file (DICOM: after RescaleSlope/Intercept),
  as ``float32``. The only change made is inverting MONOCHROME1 (DICOM) / MINISWHITE (TIFF)
  images, ``max + min - value``, so that bone is always bright.
* Pixel spacing is isotropic, in millimetres per pixel, or ``None`` when unknown.
* Label maps are ``uint8 [row, col]``: 0 other, 1 upper side of the joint, 2 lower side.

* Size limits (:mod:`jsnq.limits`) are checked from the file header before decoding:
  :data:`~jsnq.limits.MAX_IMAGE_PIXELS` for any image, :data:`~jsnq.limits.MAX_CROP_SIDE_PX`
  a side with ``load_image(..., crop=True)``.

Every problem with the input is raised as :class:`~jsnq.errors.JsnqInputError`, whose
message is one line naming the file (or array) and the problem.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .errors import JsnqInputError
from .limits import MAX_CROP_SIDE_PX, MAX_FILE_BYTES, MAX_IMAGE_PIXELS, check_crop_size, check_image_size
from .outputs import atomic_output

__all__ = [
    "MAX_CROP_SIDE_PX",
    "MAX_IMAGE_PIXELS",
    "Image",
    "file_spacing",
    "check_crop_size",
    "common_spacing",
    "load_image",
    "load_labels",
    "save_image",
    "save_labels",
    "validate_spacing",
]

MIN_SIDE_PX = 16
SPACING_RANGE_MM = (0.01, 5.0)  # (exclusive, inclusive)
GREY_TOLERANCE_LEVELS = 8  # channel spread allowed in an RGB image that encodes grey, in 8-bit levels
GREY_OUTLIER_FRACTION = 0.01  # fraction of pixels allowed to exceed that spread (JPEG chroma noise)
ANISOTROPY_TOLERANCE = 0.01  # relative difference of row and column spacing still called isotropic
SPACING_MISMATCH_TOLERANCE = 0.01  # relative difference of two visits' spacings still called the same

_INVERTED_PHOTOMETRIC = frozenset({"MONOCHROME1", "MINISWHITE"})
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PILLOW_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"BM", b"GIF8")
_DICOM_SUFFIXES = (".dcm", ".dicom")
_PILLOW_DIRECT_MODES = frozenset({"L", "LA", "I", "I;16", "I;16L", "I;16B", "F", "RGB", "RGBA"})

_ARRAY_NAME = "<array>"

# A reader returns (pixels as stored, meta, file spacing as (row_mm, col_mm, tag) or None).
# Before decoding, it passes the header's (rows, cols, samples per pixel) to a _HeaderCheck.
_Raw = tuple[np.ndarray, dict[str, Any], tuple[float, float, str] | None]
_HeaderCheck = Callable[[int, int, int], None]


@dataclass(frozen=True, eq=False)
class Image:
    """A 2-D greyscale radiograph.

    Attributes:
        array: ``float32`` pixel values indexed ``[row, col]``, C-contiguous; values as
            stored in the file (DICOM: after RescaleSlope/Intercept), MONOCHROME1 inverted
            so that bone is bright. Treat as read-only.
        spacing_mm: isotropic pixel spacing in millimetres per pixel, ``None`` when unknown.
        source: the file path, or ``"<array>"`` / the caller-given name; used in messages.
        meta: small dict describing the origin: ``format`` ("PNG", "JPEG", "BMP", "TIFF",
            "DICOM", "array"), ``dtype`` (original), ``bits``, ``photometric``,
            ``spacing_source`` ("PixelSpacing", "ImagerPixelSpacing", "caller" or None);
            DICOM adds ``transfer_syntax``.

    Compared by identity (``eq=False``), since arrays have no single truth value.
    """

    array: np.ndarray
    spacing_mm: float | None
    source: str
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        array = np.ascontiguousarray(self.array, dtype=np.float32)
        if array.ndim != 2:
            raise JsnqInputError(self.source, f"image is not 2-D (shape {array.shape})")
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "spacing_mm", validate_spacing(self.spacing_mm, self.source))
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` in pixels."""
        return (int(self.array.shape[0]), int(self.array.shape[1]))


# -- public API ---------------------------------------------------------------------------


def validate_spacing(spacing_mm: float | None, source: str) -> float | None:
    """Check a pixel spacing.

    Args:
        spacing_mm: millimetres per pixel, or ``None`` (unknown; passes).
        source: file or array name used in the error message.

    Returns:
        The spacing as a ``float`` in mm, or ``None``.

    Raises:
        JsnqInputError: the spacing is not a finite number in (0.01, 5] mm.
    """
    if spacing_mm is None:
        return None
    try:
        value = float(spacing_mm)
    except (TypeError, ValueError):
        problem = f"invalid pixel spacing {spacing_mm!r} (expected a number in mm)"
        raise JsnqInputError(source, problem) from None
    low, high = SPACING_RANGE_MM
    if not (math.isfinite(value) and low < value <= high):
        raise JsnqInputError(source, f"absurd pixel spacing {value:g} mm (expected {low:g}-{high:g} mm)")
    return value


def common_spacing(base: Image, fol: Image, *, spacing_mm: float | None = None) -> float | None:
    """The one pixel spacing two visits are measured at, or ``None`` when neither has one.

    Args:
        base: the baseline visit.
        fol: the follow-up visit.
        spacing_mm: a spacing the caller gave explicitly (mm per pixel): it overrides both
            visits' own spacings (from their files or arrays) and is returned as validated.

    Returns:
        ``spacing_mm`` when given; else the visits' common spacing (the baseline's, when
        the two agree within :data:`SPACING_MISMATCH_TOLERANCE`); ``None`` when neither
        visit has one (results are then in pixels only).

    Raises:
        JsnqInputError: exactly one visit has a spacing (naming the one without: the known
            spacing would silently be applied to a visit that may differ), or the two differ
            by more than 1 % (a narrowing in mm would mix scales); an invalid ``spacing_mm``.
    """
    if spacing_mm is not None:
        return validate_spacing(spacing_mm, f"{base.source}, {fol.source}")
    b, f = base.spacing_mm, fol.spacing_mm
    if b is None and f is None:
        return None
    if b is None or f is None:
        known, missing = (base, fol) if f is None else (fol, base)
        role = "baseline" if missing is base else "follow-up"
        other = "follow-up" if missing is base else "baseline"
        problem = (f"the {role} has no pixel spacing but the {other} ({known.source}) has "
                   f"{known.spacing_mm:g} mm; give the spacing explicitly (spacing_mm / --spacing) "
                   "to use it for both visits")
        raise JsnqInputError(missing.source, problem)
    if abs(b - f) > SPACING_MISMATCH_TOLERANCE * max(b, f):
        problem = (f"pixel spacing {f:g} mm differs from the baseline's {b:g} mm by more than "
                   f"{SPACING_MISMATCH_TOLERANCE:.0%}; resample the crops to a common spacing first")
        raise JsnqInputError(fol.source, problem)
    return b


def load_image(
    src: str | os.PathLike | np.ndarray | Image,
    *,
    spacing_mm: float | None = None,
    name: str | None = None,
    crop: bool = False,
) -> Image:
    """Load a greyscale radiograph from a file, an array or an :class:`Image`.

    Files are recognised by content: DICOM (``DICM`` at offset 128, or a ``.dcm`` file
    without preamble), TIFF (tifffile, falling back to Pillow for codecs tifffile lacks),
    and PNG / JPEG / BMP through Pillow; 8- or 16-bit integer or float. RGB(A) images are
    accepted when they encode grey (channels within 8 levels of each other on 99% of pixels)
    and their colour channels are averaged; alpha is ignored.

    Args:
        src: a path, a 2-D array indexed ``[row, col]`` (or ``(rows, cols, 3|4)`` grey RGB),
            or an :class:`Image` (returned with ``name`` / ``spacing_mm`` applied).
        spacing_mm: pixel spacing in mm per pixel; overrides the file's spacing, whose tags
            are then not read (``meta["spacing_source"] == "caller"``).
        name: label used as ``source`` in place of the path or ``"<array>"``.
        crop: the image is a joint crop: refuse it when a side exceeds
            :data:`~jsnq.limits.MAX_CROP_SIDE_PX` (see :func:`~jsnq.limits.check_crop_size`),
            from the file header, before decoding.

    Returns:
        The :class:`Image`, ``array`` float32 ``[row, col]``.

    Raises:
        JsnqInputError: missing, unreadable or corrupt file; colour, non-2-D, non-finite,
            blank or too small (< 16 px a side) image; an image over the size limits of
            :mod:`jsnq.limits` (checked from the header, before decoding: over
            :data:`~jsnq.limits.MAX_IMAGE_PIXELS` for any image, over
            :data:`~jsnq.limits.MAX_CROP_SIDE_PX` a side with ``crop=True``); absurd or
            anisotropic spacing.
    """
    if isinstance(src, Image):
        source = name or src.source
        spacing = validate_spacing(spacing_mm, source)
        if crop:
            check_crop_size(src, source=source)
        if spacing is None:
            return dataclasses.replace(src, source=source)
        return dataclasses.replace(
            src, source=source, spacing_mm=spacing, meta={**src.meta, "spacing_source": "caller"}
        )

    source = name or (_ARRAY_NAME if isinstance(src, np.ndarray) else os.fsdecode(src))
    spacing = validate_spacing(spacing_mm, source)

    def check(rows: int, cols: int, samples: int) -> None:
        check_image_size(rows, cols, source=source, channels=samples)
        if crop:
            check_crop_size((rows, cols), source=source)

    if isinstance(src, np.ndarray):
        if src.ndim >= 2:
            check(src.shape[0], src.shape[1], 1)
        pixels, meta, file_spacing = src, {"format": "array", "dtype": str(src.dtype)}, None
    else:
        pixels, meta, file_spacing = _read_file(os.fsdecode(src), source, check)

    array = _as_grey(pixels, source)
    _check_image(array, source)
    if meta.get("photometric") in _INVERTED_PHOTOMETRIC:  # in float64: max + min may overflow float32
        low, high = float(array.min()), float(array.max())
        array = (high + low) - array.astype(np.float64)
    array = _as_float32(array, source)

    if spacing is not None:
        meta["spacing_source"] = "caller"
    elif file_spacing is not None:
        row_mm, col_mm, meta["spacing_source"] = file_spacing
        if abs(row_mm - col_mm) > ANISOTROPY_TOLERANCE * max(abs(row_mm), abs(col_mm)):
            problem = f"anisotropic pixel spacing ({row_mm:g} x {col_mm:g} mm) is not supported"
            raise JsnqInputError(source, problem)
        spacing = validate_spacing((row_mm + col_mm) / 2.0, source)
    else:
        meta["spacing_source"] = None
    return Image(array, spacing, source, meta)


def load_labels(
    src: str | os.PathLike | np.ndarray,
    *,
    shape: tuple[int, int],
    split_mask: bool = False,
    name: str | None = None,
) -> np.ndarray:
    """Load a label map for an image of ``shape``.

    Args:
        src: a path (any format :func:`load_image` reads; PNG typical) or an array
            indexed ``[row, col]``.
        shape: ``(rows, cols)`` of the image the labels belong to.
        split_mask: ``False``: the values must be a subset of {0, 1, 2} (0 other, 1 upper
            side, 2 lower side). ``True``: a binary split mask in the paper's style,
            non-zero = upper side (1), zero = lower side (2).
        name: label used in messages in place of the path or ``"<array>"``.

    Returns:
        ``uint8`` array ``[row, col]`` of 0, 1, 2, holding both 1 and 2.

    Raises:
        JsnqInputError: unreadable file, shape mismatch, unexpected values, or a side missing.
    """
    source = name or (_ARRAY_NAME if isinstance(src, np.ndarray) else os.fsdecode(src))
    try:
        expected = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise JsnqInputError(source, f"invalid image shape {shape!r} for the labels") from None

    def check(rows: int, cols: int, samples: int) -> None:  # before decoding a file
        check_image_size(rows, cols, source=source, channels=samples)
        if (rows, cols) != expected:
            raise JsnqInputError(source, f"labels are {rows}x{cols} but the image is {_dims(expected)}")

    if isinstance(src, np.ndarray):
        pixels = src
    else:
        pixels = _read_file(os.fsdecode(src), source, check)[0]
    values = _as_grey(pixels, source, what="labels")
    if values.shape != expected:
        raise JsnqInputError(source, f"labels are {_dims(values.shape)} but the image is {_dims(expected)}")
    if not np.isfinite(values).all():
        raise JsnqInputError(source, "labels contain NaN or infinite values")

    if split_mask:
        labels = np.where(values != 0, 1, 2).astype(np.uint8)
    else:
        present = np.unique(values)
        unexpected = present[~np.isin(present, (0, 1, 2))]
        if unexpected.size:
            listed = ", ".join(f"{v:g}" for v in unexpected[:8]) + (", ..." if unexpected.size > 8 else "")
            hint = "; a 0/255 image looks like a binary split mask (--split-masks / split_masks=True)" if set(present.tolist()) <= {0, 255} else ""
            problem = f"labels contain unexpected values {listed} (expected 0, 1, 2){hint}"
            raise JsnqInputError(source, problem)
        labels = values.astype(np.uint8)

    counts = np.bincount(labels.ravel(), minlength=3)
    for value, side in ((1, "upper"), (2, "lower")):
        if counts[value] == 0:
            raise JsnqInputError(source, f"labels lack the {side} bone side (value {value})")
    return np.ascontiguousarray(labels)


def save_image(path: str | os.PathLike, image: np.ndarray, *, inputs: Iterable[Any] = ()) -> None:
    """Write a 2-D image as a 16-bit greyscale PNG, its min..max stretched to 0..65535.

    Written atomically (a temporary file, then ``os.replace``); an existing symlink at
    ``path`` is refused, not followed (:func:`jsnq.outputs.atomic_output`).

    Args:
        path: the output file.
        image: 2-D array indexed ``[row, col]``.
        inputs: input files ``path`` must not be.

    Raises:
        JsnqInputError: the file cannot be written, or ``path`` is an input or a symlink.
    """
    from PIL import Image as PILImage

    a = np.asarray(image, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    scaled = np.round((a - lo) / (hi - lo if hi > lo else 1.0) * 65535.0).astype(np.uint16)
    with atomic_output(path, inputs=inputs) as tmp:
        PILImage.fromarray(scaled).save(tmp, format="PNG")


def save_labels(path: str | os.PathLike, labels: np.ndarray, *, inputs: Iterable[Any] = ()) -> None:
    """Write a label map (values 0, 1, 2, indexed ``[row, col]``) as an 8-bit PNG.

    Written atomically like :func:`save_image`.

    Args:
        path: the output file.
        labels: 2-D array of 0, 1, 2.
        inputs: input files ``path`` must not be (``segment a.png -o a.png``).

    Raises:
        JsnqInputError: ``labels`` is not 2-D or holds values other than 0, 1, 2; the file
            cannot be written (read-only folder, ...); ``path`` is an input or a symlink.
    """
    from PIL import Image as PILImage

    values = np.asarray(labels)
    if values.ndim != 2 or not np.isin(values, (0, 1, 2)).all():
        raise JsnqInputError(os.fspath(path), "labels to save must be a 2-D array of 0, 1, 2")
    with atomic_output(path, inputs=inputs) as tmp:
        PILImage.fromarray(values.astype(np.uint8)).save(tmp, format="PNG")


# -- validation ----------------------------------------------------------------------------


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _as_grey(pixels: np.ndarray, source: str, what: str = "image") -> np.ndarray:
    """2-D (or ``(rows, cols, 2|3|4)`` grey-encoding) numeric pixels -> one plane.

    Two channels are grey + alpha; three or four are RGB(A). The colour channels must agree
    within ``GREY_TOLERANCE_LEVELS`` (scaled to the dtype) on all but
    ``GREY_OUTLIER_FRACTION`` of the pixels; they are then averaged.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype.kind not in "buif":
        raise JsnqInputError(source, f"{what} has non-numeric pixel type {pixels.dtype}")
    if pixels.dtype.kind == "b":  # numpy cannot subtract booleans (the grey check below does)
        pixels = pixels.astype(np.uint8)
    if not (pixels.ndim == 3 and pixels.shape[-1] in (2, 3, 4)):
        return pixels
    colour = pixels[..., : 1 if pixels.shape[-1] == 2 else 3]
    spread = colour.max(axis=-1).astype(np.float64) - colour.min(axis=-1).astype(np.float64)
    if pixels.dtype.kind in "ui":
        tolerance = GREY_TOLERANCE_LEVELS * 2.0 ** (8 * pixels.dtype.itemsize - 8)
    else:
        span = float(colour.max()) - float(colour.min()) if colour.size else 0.0  # Python floats: no overflow
        tolerance = GREY_TOLERANCE_LEVELS / 255.0 * span
    if np.mean(spread > tolerance) > GREY_OUTLIER_FRACTION:
        raise JsnqInputError(source, f"{what} is colour, not greyscale")
    return colour.mean(axis=-1, dtype=np.float64)


def _as_float32(array: np.ndarray, source: str) -> np.ndarray:
    """Finite pixels as C-contiguous float32; values beyond float32's range are refused."""
    with np.errstate(over="ignore", invalid="ignore"):
        result = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(result).all():
        limit = float(np.finfo(np.float32).max)
        raise JsnqInputError(source, f"image values exceed the float32 range (|value| > {limit:.3g})")
    return result


def _check_image(array: np.ndarray, source: str) -> None:
    if array.ndim != 2:
        raise JsnqInputError(source, f"image is not 2-D (shape {array.shape})")
    rows, cols = array.shape
    if min(rows, cols) < MIN_SIDE_PX:
        problem = f"image is too small ({rows}x{cols} px; need at least {MIN_SIDE_PX} a side)"
        raise JsnqInputError(source, problem)
    if not np.isfinite(array).all():
        raise JsnqInputError(source, "image contains NaN or infinite values")
    low, high = array.min(), array.max()
    if low == high:
        raise JsnqInputError(source, f"image is blank (constant value {float(low):g})")


# -- file readers ---------------------------------------------------------------------------


def _read_file(path: str, source: str, check: _HeaderCheck) -> _Raw:
    """Dispatch on content; turn any reader failure into one JsnqInputError line.

    ``check(rows, cols, samples)`` is called with the header's dimensions before decoding.
    """
    if not os.path.exists(path):
        raise JsnqInputError(source, "file not found")
    if os.path.isdir(path):
        raise JsnqInputError(source, "is a directory, not an image file")
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            problem = f"file is {size / 2**20:.0f} MiB; jsnq reads image files of at most {MAX_FILE_BYTES // 2**20} MiB"
            raise JsnqInputError(source, problem)
        with open(path, "rb") as fh:
            head = fh.read(132)
        if not head:
            raise JsnqInputError(source, "cannot read image: file is empty")
        if head[128:132] == b"DICM":
            return _read_dicom(path, source, check, force=False)
        if head[:4] in _TIFF_MAGIC:
            return _read_tiff(path, source, check)
        if not head.startswith(_PILLOW_MAGIC) and Path(path).suffix.lower() in _DICOM_SUFFIXES:
            return _read_dicom(path, source, check, force=True)  # DICOM without the 128-byte preamble
        return _read_pillow(path, source, check)
    except (JsnqInputError, MemoryError):
        raise
    except Exception as exc:  # every codec raises its own types; report them uniformly
        raise JsnqInputError(source, f"cannot read image: {_short_reason(exc)}") from exc


def _short_reason(exc: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "unrecognised or corrupt image format"
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = reason.split(" - ")[0].rstrip(" .") or type(exc).__name__  # drop long explanations
    return reason if len(reason) <= 160 else reason[:157] + "..."


def _read_pillow(path: str, source: str, check: _HeaderCheck) -> _Raw:
    import warnings

    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():  # jsnq's own, smaller limit is checked below
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            im = PILImage.open(path)
    except PILImage.DecompressionBombError:
        problem = (f"image is larger than {2 * PILImage.MAX_IMAGE_PIXELS} px (a decompression bomb?); "
                   f"jsnq reads radiographs of at most {MAX_IMAGE_PIXELS} px")
        raise JsnqInputError(source, problem) from None
    with im:
        check(im.height, im.width, len(im.getbands()))  # from the header: nothing decoded yet
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise JsnqInputError(source, f"image is not 2-D (shape ({frames}, {im.height}, {im.width}))")
        fmt, mode = im.format, im.mode
        if mode not in _PILLOW_DIRECT_MODES:  # palette, 1-bit, CMYK, ...: let the grey check decide
            im = im.convert("RGBA" if im.has_transparency_data else "RGB")
        pixels = np.asarray(im)  # decodes; raises on truncated data
    meta = {"format": fmt, "dtype": str(pixels.dtype), "bits": 8 * pixels.dtype.itemsize, "photometric": mode}
    return pixels, meta, None


def _read_tiff(path: str, source: str, check: _HeaderCheck) -> _Raw:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series, page = tif.series[0], tif.pages[0]
            check(page.imagelength, page.imagewidth, page.samplesperpixel)  # from the tags: nothing decoded yet
            if math.prod(series.shape) > 4 * MAX_IMAGE_PIXELS:  # a stack of pages: refused below, unread
                raise JsnqInputError(source, f"image is not 2-D (shape {tuple(series.shape)})")
            photometric = page.photometric.name
            if photometric not in ("MINISBLACK", "MINISWHITE", "RGB"):
                raise ValueError(f"unsupported TIFF photometric {photometric}")
            pixels = series.asarray()
            if "S" in series.axes:  # samples (channels) last, also for planar RGB
                pixels = np.moveaxis(pixels, series.axes.index("S"), -1)
            bits = int(page.bitspersample)
    except JsnqInputError:
        raise
    except Exception as exc:
        # tifffile needs imagecodecs for LZW, JPEG, ... and does not read palette TIFFs;
        # Pillow does. Report tifffile's reason when Pillow cannot read the file either.
        try:
            return _read_pillow(path, source, check)
        except JsnqInputError:
            raise
        except Exception:
            raise exc from None
    meta = {"format": "TIFF", "dtype": str(pixels.dtype), "bits": bits, "photometric": photometric}
    return pixels, meta, None


def _read_dicom(path: str, source: str, check: _HeaderCheck, *, force: bool) -> _Raw:
    import pydicom  # JPEG / JPEG-LS / JPEG 2000 / RLE decoders: pylibjpeg plugins, found by pydicom

    ds = pydicom.dcmread(path, force=force)
    if "TransferSyntaxUID" not in ds.file_meta:  # raw DICOM without file meta: use the encoding read
        implicit_vr, little_endian = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian if implicit_vr
            else pydicom.uid.ExplicitVRLittleEndian if little_endian
            else pydicom.uid.ExplicitVRBigEndian
        )
    frames = int(_dicom_number(ds, "NumberOfFrames", 1))
    if frames > 1:
        raise JsnqInputError(source, f"image is not 2-D (shape ({frames}, {ds.Rows}, {ds.Columns}))")
    rows, cols = int(_dicom_number(ds, "Rows", 0)), int(_dicom_number(ds, "Columns", 0))
    check(rows, cols, int(_dicom_number(ds, "SamplesPerPixel", 1)))  # from the tags: nothing decoded yet
    pixels = ds.pixel_array
    dtype = str(pixels.dtype)
    slope, intercept = _dicom_number(ds, "RescaleSlope", 1.0), _dicom_number(ds, "RescaleIntercept", 0.0)
    if (slope, intercept) != (1.0, 0.0):
        pixels = pixels * slope + intercept

    spacing = _dicom_spacing(ds)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    meta = {
        "format": "DICOM",
        "dtype": dtype,
        "bits": int(_dicom_number(ds, "BitsStored", 8 * np.dtype(dtype).itemsize)),
        "photometric": str(ds.get("PhotometricInterpretation", "")).strip() or None,
        "transfer_syntax": syntax.name if syntax else None,
    }
    return pixels, meta, spacing


def _dicom_spacing(ds: Any) -> tuple[float, float, str] | None:
    """``(row mm, col mm, tag)`` from PixelSpacing, else ImagerPixelSpacing; None without either."""
    import pydicom

    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(tag)
        if value is not None and value != "":
            many = isinstance(value, pydicom.multival.MultiValue)
            row_col = [float(v) for v in (value if many else [value])]
            row_col = row_col * 2 if len(row_col) == 1 else row_col
            return (row_col[0], row_col[1], tag)
    return None


def file_spacing(path: str | os.PathLike) -> float | None:
    """The pixel spacing (mm) a file's header states, read without decoding its pixels: a DICOM's
    (mean of row and column, as :func:`load_image`), None for other formats or without one.

    Raises:
        OSError, ValueError: the file cannot be read as its kind (callers that only probe may
            ignore it: :func:`load_image` reports it properly when the image is read).
    """
    name = os.fsdecode(path)
    with open(name, "rb") as fh:
        head = fh.read(132)
    dicom = head[128:132] == b"DICM" or (not head.startswith(_PILLOW_MAGIC) and head[:4] not in _TIFF_MAGIC
                                         and Path(name).suffix.lower() in _DICOM_SUFFIXES)
    if not dicom:
        return None
    import pydicom

    found = _dicom_spacing(pydicom.dcmread(name, stop_before_pixels=True, force=True))
    return None if found is None else (found[0] + found[1]) / 2.0


def _dicom_number(ds: Any, keyword: str, default: float) -> float:
    value = ds.get(keyword)
    return default if value is None or value == "" else float(value)
