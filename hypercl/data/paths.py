"""Where datasets are looked for on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

__all__ = ["resolve_data_root", "resolve_cache_root", "ENV_VAR"]

ENV_VAR = "HYPERCL_DATA"

PathLike = Union[str, "os.PathLike[str]"]


def resolve_data_root(data_root: Optional[PathLike] = None) -> Path:
    """Return the data root folder (not created).

    Order: the explicit ``data_root`` argument, else ``$HYPERCL_DATA`` (if set and
    non-empty), else ``$XDG_CACHE_HOME/hypercl/data``, else ``~/.cache/hypercl/data``.
    ``~`` is expanded; the result is absolute.
    """
    if data_root is not None and str(data_root) != "":
        return Path(data_root).expanduser().absolute()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser().absolute()
    return resolve_cache_root() / "data"


def resolve_cache_root() -> Path:
    """hypercl's cache folder (not created): ``$XDG_CACHE_HOME/hypercl``, else ``~/.cache/hypercl``; absolute."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return (base / "hypercl").absolute()
