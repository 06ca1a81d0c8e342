"""Other groups' evaluation protocols, declared as data: which metrics, how frames are sampled, how a run's numbers
are aggregated and weighted (see :mod:`.definitions`), with their arithmetic in :mod:`.arithmetic`, the
CurricularFace backbone in :mod:`.curricularface` and the published baselines in :mod:`.baselines`.

Facts about each protocol come from its authors' evaluation code; every one is cited where it is used:

* ConsisID: ``PKU-YuanGroup/ConsisID`` ``eval/get_facesim_fid.py``, ``eval/get_clipscore.py``,
  ``eval/eval_all_in_once.py``;
* OpenS2V-Eval (human domain): ``PKU-YuanGroup/OpenS2V-Nexus`` ``eval/get_*.py`` and the v1.0 ``merge_result.py``
  (mirrored in ``franciszzj/OpenS2V-Nexus`` ``eval/v1.0_backup/merge_result.py``), whose numbers the leaderboard
  v1.0 (``leaderboard/file_v1.0/results_Human-Domain.csv``) reports.

Importing this package is cheap (no torch).
"""

from __future__ import annotations

from fantasyid.metrics.protocols.definitions import PROTOCOL_NAMES, PROTOCOLS, Protocol, get_protocol

__all__ = ["PROTOCOLS", "PROTOCOL_NAMES", "Protocol", "get_protocol"]
