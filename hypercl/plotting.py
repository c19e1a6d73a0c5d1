"""matplotlib for files, not screens: the one place that picks the ``Agg`` backend (the ``plot`` extra is optional)."""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["pyplot"]


def pyplot() -> Optional[Any]:
    """``matplotlib.pyplot`` on the file-only ``Agg`` backend, or ``None`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot extra is optional
        return None
    return plt
