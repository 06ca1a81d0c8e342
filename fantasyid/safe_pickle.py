"""Loading third-party pickles without running their code: an allow-list unpickler.

FLAME's ``generic_model.pkl``, DECA's ``landmark_embedding.npy`` and the release's ``transform.pkl`` are pickles
we do not control. :class:`AllowListUnpickler` resolves only the globals its caller lists (numpy's array
reconstruction, plus stand-ins for chumpy or scipy objects that keep nothing but arrays); any other global raises
:class:`~fantasyid.errors.UnsafeFileError` before its module is imported, let alone called. Containers, strings and
numbers are built by pickle opcodes and need no global.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from .errors import UnsafeFileError

__all__ = ["AllowListUnpickler", "latin1_encode", "numpy_globals"]


def latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """The only use of ``_codecs.encode`` in array pickles: Python 3 stores bytes in protocol 0-2 pickles as
    ``_codecs.encode(text, "latin1")``. Any other encoding is refused."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise UnsafeFileError(f"the file asks for an encoding other than latin-1 ({encoding!r})")
    return text.encode("latin1", errors)


def numpy_globals() -> dict[tuple[str, str], Any]:
    """What numpy arrays, scalars and dtypes need, under numpy 1.x and 2.x module names."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{prefix}.numeric", "_frombuffer")] = numeric._frombuffer
    allowed[("_codecs", "encode")] = latin1_encode
    return allowed


class AllowListUnpickler(pickle.Unpickler):
    """Resolves only ``allowed`` globals; refuses everything else, and persistent ids, with a one-line error.

    Args:
        stream: the open binary file.
        source: the file's name, for messages.
        allowed: ``(module, name) → object`` to return for that global.
        what: what the file should be, for messages ("a FLAME model file").
        hint: what to do instead.
    """

    def __init__(self, stream: io.BufferedIOBase, source: str, allowed: dict[tuple[str, str], Any], what: str,
                 hint: str = ""):
        super().__init__(stream, encoding="latin1")  # Python 2 pickles: str → latin-1, as numpy's arrays need
        self._allowed = allowed
        self._source = source
        self._what = what
        self._hint = hint

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed.get((module, name))
        if found is None:
            raise UnsafeFileError(
                f"{self._source} refers to {module}.{name}, which {self._what} does not contain; refusing to load it",
                hint=self._hint,
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(f"{self._source} uses persistent ids, which {self._what} does not contain")
