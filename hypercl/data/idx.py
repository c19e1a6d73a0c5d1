"""Reader for the idx format of MNIST (http://yann.lecun.com/exdb/mnist/)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from .errors import DatasetIntegrityError
from .paths import PathLike

__all__ = ["read_idx", "IDX_DTYPES"]

# idx type code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as fh:
                return fh.read()
        except (OSError, EOFError, zlib.error) as err:
            raise DatasetIntegrityError(f"{path}: corrupt or truncated gzip file ({err})") from err
    return path.read_bytes()


def read_idx(path: PathLike) -> torch.Tensor:
    """Read an idx file (``.gz`` or plain) into a tensor of its native dtype.

    Checks the magic number (two zero bytes, a known type code, the number of dims)
    and that the payload length matches the header; raises :class:`DatasetIntegrityError`
    for truncated, padded or malformed files.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetIntegrityError(f"{path}: too short for an idx header ({len(data)} bytes)")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES:
        raise DatasetIntegrityError(f"{path}: bad idx magic number 0x{int.from_bytes(data[:4], 'big'):08x}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DatasetIntegrityError(f"{path}: truncated idx header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise DatasetIntegrityError(f"{path}: idx payload {kind}: header {dims} needs {expected} bytes, found {actual}")
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    array = array.astype(dtype.newbyteorder("="), copy=True)  # native order, writable
    return torch.from_numpy(array)
