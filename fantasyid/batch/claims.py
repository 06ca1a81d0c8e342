"""Claims: several processes share one output folder, and each item is made by exactly one of them.

Before an item is made, its process creates ``OUT/.fantasyid/claims/STEM.lock`` with ``O_CREAT | O_EXCL`` (atomic on
local file systems and on NFSv3+): whoever creates the file owns the item. The file holds the owner's host, pid,
process start time and the claim's start time; while the item is being made a heartbeat thread touches it every
``timeout / 5`` seconds (at most every minute), so its modification time says the owner is still working.

A claim is *stale*, and may be taken over, when its owner is gone: on the same host, its pid is dead (or reused by a
process that started later); on any host, the file was not touched for longer than the timeout. Taking over goes
through a second exclusive file (``STEM.lock.takeover``) so that two processes that both see a stale claim never
both take it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_CLAIM_TIMEOUT", "ClaimInfo", "Claim", "try_claim", "read_claim", "claim_is_stale", "lock_path",
    "sigterm_as_interrupt",
]  # fmt: skip

#: Seconds without a heartbeat after which a claim from another host (or a hung process) is taken over.
DEFAULT_CLAIM_TIMEOUT = 600.0
#: A lock file found empty (its owner is between creating and writing it) counts as live for this long.
_EMPTY_GRACE = 30.0
#: A takeover file older than this was left by a process killed in the microseconds it exists: removed.
_TAKEOVER_GRACE = 60.0


def _process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc/PID/stat`` field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its closing parenthesis
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of the whole line


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


@dataclass(frozen=True)
class ClaimInfo:
    """What a lock file says about its owner."""

    host: str
    pid: int
    started: float  #: time.time() when the claim was made
    token: str  #: unique per claim (tells our own claim from a later one)
    proc_start: int | None = None  #: the owner's process start time (pid reuse check), Linux only
    age: float = 0.0  #: seconds since the lock file was last touched (heartbeat)

    @classmethod
    def mine(cls) -> ClaimInfo:
        return cls(socket.gethostname(), os.getpid(), time.time(), uuid.uuid4().hex, _process_start(os.getpid()))

    def to_bytes(self) -> bytes:
        data = {"host": self.host, "pid": self.pid, "started": self.started, "token": self.token,
                "proc_start": self.proc_start}  # fmt: skip
        return (json.dumps(data) + "\n").encode()

    def describe(self) -> str:
        since = time.strftime("%H:%M:%S", time.localtime(self.started))
        return f"{self.host}:{self.pid} since {since}"


def lock_path(claims_dir: Path, stem: str) -> Path:
    return Path(claims_dir) / f"{stem}.lock"


def read_claim(path: Path) -> ClaimInfo | None:
    """The claim in ``path``; None if there is none. An empty or unreadable file gives a ClaimInfo with pid 0."""
    try:
        stat = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    age = time.time() - stat.st_mtime
    try:
        data = json.loads(text)
        return ClaimInfo(str(data["host"]), int(data["pid"]), float(data["started"]), str(data["token"]),
                         data.get("proc_start"), age)  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return ClaimInfo("", 0, stat.st_mtime, "", None, age)


def claim_is_stale(info: ClaimInfo, timeout: float = DEFAULT_CLAIM_TIMEOUT) -> str | None:
    """Why the claim may be taken over ("process 123 on this host is gone", …), or None while it is live."""
    if info.pid == 0:  # empty or garbled file
        return f"unreadable claim, untouched for {info.age:.0f} s" if info.age > _EMPTY_GRACE else None
    if info.age > timeout:
        return f"no heartbeat from {info.host}:{info.pid} for {info.age:.0f} s (timeout {timeout:g} s)"
    if info.host == socket.gethostname():
        if not _pid_alive(info.pid):
            return f"process {info.pid} on this host is gone"
        start = _process_start(info.pid)
        if info.proc_start is not None and start is not None and start != info.proc_start:
            return f"process {info.pid} on this host is gone (its pid now belongs to another process)"
    return None


class Claim:
    """An item this process owns; :meth:`release` (or the ``with`` block's end) gives it up."""

    def __init__(self, path: Path, info: ClaimInfo, timeout: float, took_over: str | None = None):
        self.path, self.info, self.took_over = path, info, took_over
        self._stop = threading.Event()
        interval = max(0.05, min(60.0, timeout / 5))
        self._thread = threading.Thread(target=self._beat, args=(interval,), daemon=True, name=f"claim {path.name}")
        self._thread.start()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still ours."""
        self._stop.set()
        self._thread.join()
        current = read_claim(self.path)
        if current is not None and current.token == self.info.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _create(path: Path, info: ClaimInfo) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, info.to_bytes())
    finally:
        os.close(fd)
    return True


def try_claim(claims_dir: Path, stem: str, timeout: float = DEFAULT_CLAIM_TIMEOUT) -> Claim | ClaimInfo:
    """Claim ``stem``: a :class:`Claim` when this process now owns it, else the live owner's :class:`ClaimInfo`."""
    claims_dir = Path(claims_dir)
    claims_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(claims_dir, stem)
    mine = ClaimInfo.mine()
    for _ in range(3):
        if _create(path, mine):
            return Claim(path, mine, timeout)
        owner = read_claim(path)
        if owner is None:  # released between our attempt and the read: try again
            continue
        reason = claim_is_stale(owner, timeout)
        if reason is None:
            return owner
        taken = _take_over(path, owner, mine)
        if taken:
            return Claim(path, mine, timeout, took_over=reason)
    current = read_claim(path)
    return current if current is not None else ClaimInfo("?", 0, time.time(), "")


def _take_over(path: Path, stale: ClaimInfo, mine: ClaimInfo) -> bool:
    """Replace the stale claim ``stale`` by ``mine``; False when another process is doing the same (it wins)."""
    guard = path.with_name(path.name + ".takeover")
    if not _create(guard, mine):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - guard.stat().st_mtime > _TAKEOVER_GRACE:
                guard.unlink()
        return False
    try:
        current = read_claim(path)
        if current is not None and (current.token, current.pid) != (stale.token, stale.pid):
            return False  # someone else replaced it already
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return _create(path, mine)
    finally:
        guard.unlink()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside the block, SIGTERM (torchrun stopping its workers, Slurm's time limit, ``kill``) raises
    KeyboardInterrupt like Ctrl-C, so that the current item's claim is released and its partial files removed. Only
    in the main thread (elsewhere signal handlers cannot be set: the block runs unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
