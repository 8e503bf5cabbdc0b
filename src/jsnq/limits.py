"""Size limits on inputs, checked before any heavy work; no image maths.

Two limits, because jsnq reads two kinds of image:

* **Any radiograph** (:data:`MAX_IMAGE_PIXELS`, :data:`MAX_IMAGE_SIDE_PX`): checked by
  :mod:`jsnq.io` from the file header (Pillow's size, the TIFF tags, the DICOM Rows and
  Columns) *before* the pixels are decoded, so a decompression bomb or a corrupt header that
  claims 80 000 x 80 000 px never allocates. Whole-hand radiographs are up to about
  4000 x 5000 px in practice (a 43 cm detector at 0.1 mm, or a 24 x 30 cm cassette at
  0.05 mm: 20-30 Mpx); the limit, 2**26 px (8192 x 8192), leaves more than twice that.
* **A joint crop** (:data:`MAX_CROP_SIDE_PX`): :func:`check_crop_size`, called by the crop
  pipeline (``measure``, ``segment``, ``series``) before it segments or registers, so a
  whole radiograph passed where a crop belongs is refused in one line rather than running
  for minutes and dying of memory (an 8000 x 8000 PNG peaked at 11 GB) or "measuring" a
  nonsense joint space width.

Every refusal is a :class:`~jsnq.errors.JsnqInputError`: one line naming the source.
"""

from __future__ import annotations

from typing import Any

from .errors import JsnqInputError

__all__ = [
    "MAX_CROP_SIDE_PX",
    "MAX_FILE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE_PX",
    "check_crop_size",
    "check_image_size",
]

MAX_IMAGE_PIXELS = 2**26
"""Most pixels (rows x cols) of any image jsnq reads: 67 108 864, i.e. 8192 x 8192.

More than twice the largest whole-hand radiographs (~4000 x 5000 px). At this size one
``float32`` copy is 256 MiB, so the reader's few transient copies stay near 1-2 GiB.
"""

MAX_IMAGE_SIDE_PX = 16384
"""Longest side of any image, in pixels: a 1 x 60 000 000 strip is no radiograph either."""

MAX_FILE_BYTES = 2**30
"""Largest input file, 1 GiB: an uncompressed 8192 x 8192 RGB 16-bit file is 384 MiB."""

MAX_CROP_SIDE_PX = 1024
"""Longest side of a joint crop, in pixels.

Why 1024: the shipped crops are 256 px a side and the paper's 127 px; one finger joint with
the bone ends around it spans 15-25 mm, i.e. 150-250 px at 0.1 mm/px and at most ~500 px on
a 0.05 mm detector. 1024 px leaves 4x the shipped crop and 2x the finest detector. Beyond
it nothing is gained: both networks (segmentation and registration) see every crop resized
to 128 px, so a 1024 px crop is already downsampled 8x for them, while the classical
engine's time and memory grow with the pixel count (a 1024 px crop is 16x a 256 px one, an
8000 px one 1000x, which is what ran for minutes and died of memory).
"""


def _dims(rows: int, cols: int) -> str:
    return f"{rows}x{cols} px"


def check_image_size(rows: int, cols: int, *, source: object, channels: int = 1) -> None:
    """Refuse an image too large for any radiograph, from its dimensions alone.

    Call it with the sizes from the file header, before decoding.

    Args:
        rows: image height in pixels (as the header states it).
        cols: image width in pixels.
        source: file or array name used in the message.
        channels: samples per pixel (RGB: 3); only used to bound the memory of odd layouts.

    Raises:
        JsnqInputError: more than :data:`MAX_IMAGE_PIXELS` pixels, a side over
            :data:`MAX_IMAGE_SIDE_PX`, or more than 4 samples per pixel.
    """
    rows, cols, channels = int(rows), int(cols), int(channels)
    if rows * cols > MAX_IMAGE_PIXELS or max(rows, cols) > MAX_IMAGE_SIDE_PX:
        problem = (f"image is {_dims(rows, cols)}; jsnq reads radiographs of at most {MAX_IMAGE_PIXELS} px "
                   f"({MAX_IMAGE_SIDE_PX} px a side), which is over twice a whole-hand radiograph")
        raise JsnqInputError(source, problem)
    if channels > 4:
        raise JsnqInputError(source, f"image has {channels} samples per pixel (expected grey, RGB or RGBA)")


def check_crop_size(image: Any, *, source: object | None = None) -> None:
    """Refuse a joint crop larger than :data:`MAX_CROP_SIDE_PX` on either side.

    Call it at the start of the crop pipeline (``measure``, ``segment``, ``series``), before
    segmenting or registering.

    Args:
        image: a :class:`jsnq.io.Image`, an array indexed ``[row, col]`` (only its
            ``shape`` is read), or a ``(rows, cols)`` tuple (e.g. from a file header).
        source: name used in the message; default the image's ``source``, else ``"<array>"``.

    Raises:
        JsnqInputError: a side exceeds :data:`MAX_CROP_SIDE_PX`, e.g.
            ``"hand.png: image is 8000x8000 px; joint crops are at most 1024 px a side ..."``.
    """
    name = source if source is not None else getattr(image, "source", "<array>")
    array = getattr(image, "array", image)
    shape = tuple(image) if isinstance(image, tuple) else tuple(getattr(array, "shape", ()))
    if len(shape) < 2:
        return  # not an image: the readers report that
    rows, cols = int(shape[0]), int(shape[1])
    if max(rows, cols) > MAX_CROP_SIDE_PX:
        problem = (f"image is {_dims(rows, cols)}; joint crops are at most {MAX_CROP_SIDE_PX} px a side "
                   f"(the shipped crops are 256 px): cut a crop around one joint first")
        raise JsnqInputError(name, problem)
