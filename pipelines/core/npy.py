"""`.npy` bytes that are the same for the same array, and never a pickle: the codec of every array
t2a stores (shard members, annotation embeddings, latents)."""

from __future__ import annotations

import io

import numpy as np


class NpyError(ValueError):
    """An array that cannot be stored without pickle, or bytes that are not a plain .npy array."""


def encode(array: np.ndarray) -> bytes:
    """`.npy` format 1.0, C order, little-endian: the same array always gives the same bytes."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise NpyError("object arrays cannot be stored (they would need pickle)")
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=(1, 0), allow_pickle=False)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Never unpickles: an object array (or any pickle payload) is refused."""
    try:
        return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise NpyError(f"not a plain .npy array: {error}") from None
