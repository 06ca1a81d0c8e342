"""Batch runs shared by many processes: shards (:mod:`.shards`), per-item claims (:mod:`.claims`) and the state of an
output folder (:mod:`.folder`). :func:`fantasyid.generation.generate_batch` uses them; nothing here imports torch."""

from .claims import DEFAULT_CLAIM_TIMEOUT, Claim, ClaimInfo, sigterm_as_interrupt, try_claim
from .folder import STATES, BatchFolder, ItemCheck, request_differences
from .shards import Shard, local_rank, pick_gpu, resolve_shard

__all__ = [
    "DEFAULT_CLAIM_TIMEOUT", "Claim", "ClaimInfo", "sigterm_as_interrupt", "try_claim", "STATES", "BatchFolder", "ItemCheck",
    "request_differences", "Shard", "local_rank", "pick_gpu", "resolve_shard",
]  # fmt: skip
