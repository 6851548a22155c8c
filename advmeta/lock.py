"""A sweep owns its output folder while it runs: one lock file naming the holder.

Two runs writing one folder corrupt it (both write the same episode bank; trials fail). So a
run takes ``<folder>/.advmeta.lock`` before any work — a JSON record of who holds it (host, pid,
process start time, command, since when) created with ``O_EXCL`` — and removes it on every exit
it sees. A second run on the folder is refused with the holder named. A lock whose holder is
gone (same host, and the pid is not running or is another process now) is taken over: the
stale file is replaced through a rename, so of two runs taking it over at once exactly one wins.
Folders on remote storage (``s3://…``) are not locked here (no atomic create there).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from advmeta.errors import ConfigError

LOCK_NAME = ".advmeta.lock"
_HELD: set[Path] = set()
"""Lock files this process holds (so :func:`annotate` can add to them)."""


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux ``/proc``), to tell a reused pid from its holder."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    if start is not None and (now := _proc_start(pid)) is not None:
        return now == start
    return True


def _record(command: str) -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "proc_start": _proc_start(pid), "command": command,
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def read_lock(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The holder recorded in ``folder``'s lock (None: no lock, or unreadable)."""
    try:
        data = json.loads((Path(folder) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_stale(holder: dict[str, Any] | None) -> bool:
    if holder is None:
        return True  # half-written or garbage: its writer died between create and write
    if holder.get("host") != socket.gethostname():
        return False  # another machine's process: we cannot tell, so it holds
    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return True
    return not _alive(pid, holder.get("proc_start"))


def acquire(folder: str | os.PathLike[str], command: str) -> Path:
    """Take the lock of ``folder`` (created if needed); the lock file's path.

    Raises:
        ConfigError: another live run holds it (the message names host, pid, command and since
            when), or the folder cannot be created or written.
    """
    root = Path(folder)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"output folder {root}: cannot create it ({err.strerror or err}); choose another --output") from None
    path = root / LOCK_NAME
    mine = json.dumps(_record(command), indent=1)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(root)
            if holder is not None and holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid():
                return path  # re-entrant in one process
            if holder is not None and not _is_stale(holder):
                raise ConfigError(
                    f"{root} is in use by another run: pid {holder['pid']} on {holder.get('host')} since "
                    f"{holder.get('since')} ({holder.get('command')}); wait for it to finish or choose another "
                    f"--output (delete {path} only if that process is gone)") from None
            # Stale: replace it through a rename; then check that ours is the record that stuck.
            tmp = root / f"{LOCK_NAME}.{os.getpid()}.tmp"
            tmp.write_text(mine)
            os.replace(tmp, path)
            time.sleep(0.05)
            if read_lock(root) == json.loads(mine):
                _HELD.add(path)
                if holder is not None and holder.get("ray_session"):
                    ended = reap_ray_session(str(holder["ray_session"]))
                    if ended:
                        print(f"note: ended {ended} Ray processes left by the killed run (pid {holder.get('pid')})",
                              file=sys.stderr)
                return path
            continue
        except OSError as err:
            raise ConfigError(f"output folder {root}: cannot write in it ({err.strerror or err}); choose another "
                              "--output") from None
        with os.fdopen(fd, "w") as f:
            f.write(mine)
        _HELD.add(path)
        return path
    raise ConfigError(f"{root}: another run took the lock at the same time; try again")


def release(folder: str | os.PathLike[str]) -> None:
    """Remove ``folder``'s lock if this process holds it."""
    holder = read_lock(folder)
    _HELD.discard(Path(folder) / LOCK_NAME)
    if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        try:
            (Path(folder) / LOCK_NAME).unlink()
        except OSError:
            pass


def annotate(**fields: Any) -> None:
    """Add ``fields`` to every lock this process holds (e.g. the local Ray session it started,
    so that a run taking over after a ``kill -9`` can end the processes left behind)."""
    for path in list(_HELD):
        holder = read_lock(path.parent)
        if holder is None or holder.get("pid") != os.getpid():
            continue
        tmp = path.with_name(f"{LOCK_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**holder, **fields}, indent=1))
        os.replace(tmp, path)


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ppid(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[1]
    except (OSError, IndexError):
        return ""


def reap_ray_session(session: str) -> int:
    """SIGKILL the processes of a local Ray session (named by its session folder) and their
    children; the number ended. Linux ``/proc`` only (elsewhere: 0)."""
    import signal

    name = os.path.basename(session.rstrip("/"))
    if not name.startswith("session_") or not os.path.isdir("/proc"):
        return 0
    pids = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    roots = {p for p in pids if name in _cmdline(p)}
    doomed = roots | {p for p in pids if _ppid(p) in roots}
    ended = 0
    for p in doomed:
        try:
            os.kill(int(p), signal.SIGKILL)
            ended += 1
        except OSError:
            pass
    return ended


@contextmanager
def folder_lock(folder: str, command: str | None = None, enabled: bool = True) -> Iterator[None]:
    """Hold ``folder``'s lock for the block (a no-op for remote URIs or when not ``enabled``)."""
    if not enabled or "://" in folder:
        yield
        return
    acquire(folder, command or " ".join(["advmeta", *sys.argv[1:]]))
    try:
        yield
    finally:
        release(folder)
