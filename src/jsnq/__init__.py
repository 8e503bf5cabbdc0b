"""jsnq: sub-pixel joint space narrowing (JSN) progression from hand radiographs.

Quick use::

    import jsnq
    m = jsnq.measure("baseline.png", "followup.png", spacing_mm=0.175)
    print(m.narrowing_mm, m.narrowing_se_mm, m.reliable, m.reasons)
"""

__version__ = "0.1.0"

from .errors import JsnqInputError  # noqa: E402
from .geometry import Similarity, narrowing_px  # noqa: E402
from .io import Image, load_image, load_labels  # noqa: E402
from .measure import BoneMotion, Measurement, measure  # noqa: E402

__all__ = [
    "__version__",
    "measure",
    "Measurement",
    "BoneMotion",
    "Similarity",
    "narrowing_px",
    "load_image",
    "load_labels",
    "Image",
    "JsnqInputError",
]
