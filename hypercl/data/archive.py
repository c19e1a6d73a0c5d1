"""Safe extraction of the CIFAR ``.tar.gz`` archives."""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import List

from .errors import DatasetIntegrityError

__all__ = ["safe_extract"]


def _member_parts(member: tarfile.TarInfo, archive: Path, top: str) -> List[str]:
    name = PurePosixPath(member.name)
    parts = [p for p in name.parts if p not in ("", ".")]
    if name.is_absolute() or ".." in parts or not parts or parts[0] != top:
        raise DatasetIntegrityError(f"{archive}: unsafe or unexpected member path {member.name!r}")
    if not (member.isfile() or member.isdir()):
        raise DatasetIntegrityError(f"{archive}: member {member.name!r} is a link or special file; refusing to extract")
    return parts


def safe_extract(archive: Path, root: Path, top: str) -> None:
    """Extract the regular files of ``archive`` (all under folder ``top``) into ``root``.

    Rejects absolute paths, ``..``, links and members outside ``top``. Files are written to a
    temp folder inside ``root`` first and moved into ``root/top`` only when the whole archive
    read cleanly; files already present are kept. Raises :class:`DatasetIntegrityError` for a
    corrupt or unsafe archive.
    """
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{top}.", suffix=".extract"))
    try:
        extracted: List[List[str]] = []
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    parts = _member_parts(member, archive, top)
                    if not member.isfile():
                        continue
                    target = tmp.joinpath(*parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    if src is None:  # pragma: no cover - isfile() members always have data
                        continue
                    with src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    extracted.append(parts)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise DatasetIntegrityError(f"{archive}: corrupt or truncated archive ({err})") from err
        for parts in extracted:
            final = root.joinpath(*parts)
            if final.exists():
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp.joinpath(*parts), final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
