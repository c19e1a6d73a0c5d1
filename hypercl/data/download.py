"""Atomic, md5-checked downloads (the only module that touches the network).

Tests replace :func:`urlopen` (or :func:`download_file`) with monkeypatch so they never go online.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from .errors import DatasetIntegrityError, DatasetNotFoundError, missing_files_message

__all__ = ["urlopen", "download_file", "ensure_files", "DownloadFailed"]

_CHUNK = 1 << 20
_NETWORK_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException, EOFError)


class DownloadFailed(OSError):
    """Every URL of one file failed with a network/OS error (internal; becomes DatasetNotFoundError)."""


def urlopen(url: str, timeout: float):  # pragma: no cover - network
    """Open ``url`` for reading (the single network entry point; monkeypatch it in tests)."""
    request = urllib.request.Request(url, headers={"User-Agent": "hypercl"})
    return urllib.request.urlopen(request, timeout=timeout)


def _fetch_atomic(url: str, dest: Path, md5: Optional[str], timeout: float) -> None:
    response = urlopen(url, timeout)  # connect first: a failed download creates no folder tree
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except BaseException:
        close = getattr(response, "close", None)
        if close is not None:
            close()
        raise
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        size = 0
        with os.fdopen(fd, "wb") as out:
            try:
                headers = getattr(response, "headers", None) or {}
                expected_len = headers.get("Content-Length")
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()
            out.flush()
            os.fsync(out.fileno())
        if expected_len is not None and int(expected_len) != size:
            raise DownloadFailed(f"truncated download: {size} of {expected_len} bytes")
        actual = digest.hexdigest()
        if md5 is not None and actual != md5.lower():
            raise DatasetIntegrityError(
                f"{dest.name} downloaded from {url}: md5 mismatch (expected {md5}, actual {actual})"
            )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def download_file(urls: Sequence[str], dest: Path, md5: Optional[str] = None, timeout: float = 60.0) -> Path:
    """Download ``dest`` from the first working URL, md5-checked, written atomically.

    A temp file in ``dest``'s folder is renamed onto ``dest`` only after the md5 matched,
    so a failed or partial download leaves nothing behind. Raises :class:`DownloadFailed`
    when every URL failed with a network/OS error, or :class:`DatasetIntegrityError` when
    some URL served data with the wrong md5 and none served the right data.
    """
    dest = Path(dest)
    network: List[str] = []
    integrity: List[str] = []
    for url in urls:
        print(f"hypercl: downloading {url} -> {dest}", file=sys.stderr)
        try:
            _fetch_atomic(url, dest, md5, timeout)
            return dest
        except DatasetIntegrityError as err:
            integrity.append(str(err))
        except _NETWORK_ERRORS as err:
            network.append(f"{url}: {err}")
    if integrity:
        raise DatasetIntegrityError("; ".join(integrity + network))
    raise DownloadFailed("; ".join(network) or "no URL to download from")


def ensure_files(
    dataset: str,
    folder: Path,
    missing: Mapping[str, Optional[str]],
    urls_for: Callable[[str], Sequence[str]],
    download: bool,
    dest_folder: Optional[Path] = None,
) -> None:
    """Download each file of ``missing`` (name -> md5) into ``dest_folder`` (default ``folder``).

    Raises :class:`DatasetNotFoundError` naming every file that is still missing and the
    folder to put it in, when ``download`` is False or downloading failed (offline).
    """
    if not missing:
        return
    dest_folder = folder if dest_folder is None else dest_folder
    all_urls = [u for name in missing for u in urls_for(name)]
    if not download:
        raise DatasetNotFoundError(missing_files_message(dataset, folder, missing, "download disabled", all_urls))
    failed: Dict[str, str] = {}
    for name, md5 in missing.items():
        try:
            download_file(urls_for(name), dest_folder / name, md5)
        except DownloadFailed as err:
            failed[name] = str(err)
    if failed:
        reason = "download failed, offline? " + "; ".join(failed.values())
        raise DatasetNotFoundError(missing_files_message(dataset, folder, failed, reason, all_urls))
