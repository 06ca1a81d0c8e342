"""Identity metrics over ArcFace embeddings (FantasyID Sec. 4.1).

* **RS** (reference similarity): mean cosine similarity between the reference face and the face of each evaluated
  frame.
* **IFS** (inter-frame similarity): mean cosine similarity between the faces of consecutive evaluated frames.

Embeddings are L2-normalised, so a cosine is a dot product. A frame without a face has no embedding: it is left out
of RS and breaks the chain of consecutive pairs for IFS (faces on either side of a gap are not compared), and it
is counted so the report can say how many there were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (normalised here, so unnormalised input is fine)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    if denominator == 0:
        raise ValueError("cosine similarity of a zero vector is undefined")
    return float(a @ b / denominator)


def reference_similarities(reference: np.ndarray, embeddings: Sequence[np.ndarray | None]) -> list[float]:
    """Cosine between ``reference`` and each frame's embedding; frames without a face (``None``) are skipped."""
    return [cosine(reference, e) for e in embeddings if e is not None]


def consecutive_similarities(embeddings: Sequence[np.ndarray | None]) -> list[float]:
    """Cosine between each pair of consecutive frames that both have a face."""
    return [cosine(a, b) for a, b in pairwise(embeddings) if a is not None and b is not None]


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


@dataclass
class IdentityTrack:
    """The embeddings of one video's evaluated frames, in order (``None`` where no face was found)."""

    reference: np.ndarray | None = None  #: L2-normalised ArcFace embedding of the reference face (for RS)
    embeddings: list[np.ndarray | None] = field(default_factory=list)

    def add(self, embedding: np.ndarray | None) -> None:
        """Append the next evaluated frame's embedding (``None`` when the frame has no face)."""
        self.embeddings.append(None if embedding is None else np.asarray(embedding, dtype=np.float32))

    @property
    def rs_values(self) -> list[float]:
        """Per-frame reference similarities (frames with a face)."""
        if self.reference is None:
            return []
        return reference_similarities(self.reference, self.embeddings)

    @property
    def ifs_values(self) -> list[float]:
        """Per-pair inter-frame similarities (consecutive evaluated frames that both have a face)."""
        return consecutive_similarities(self.embeddings)

    @property
    def rs(self) -> float | None:
        """Mean reference similarity, ``None`` without a reference or without any face."""
        return _mean(self.rs_values)

    @property
    def ifs(self) -> float | None:
        """Mean inter-frame similarity, ``None`` when no two consecutive frames have a face."""
        return _mean(self.ifs_values)
