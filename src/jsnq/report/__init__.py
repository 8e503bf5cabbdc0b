"""Human-readable reports of a :class:`~jsnq.results.Measurement` (figures).

matplotlib is used only here, always through the Agg canvas (no global backend state).
"""

from .figures import overlay_labels, qa_figure, segmentation_overlay

__all__ = ["qa_figure", "overlay_labels", "segmentation_overlay"]
