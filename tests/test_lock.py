"""A sweep owns its folder: a second run is refused naming the holder; a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from advmeta.errors import ConfigError
from advmeta.lock import LOCK_NAME, acquire, folder_lock, read_lock, release


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # exited and reaped: no process has it (pids are not reused this fast)


def test_acquire_writes_the_holder_and_release_removes_it(tmp_path: Path) -> None:
    path = acquire(tmp_path / "sweep", "advmeta sweep --grid x")
    holder = read_lock(tmp_path / "sweep")
    assert path.name == LOCK_NAME and holder is not None
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert holder["command"] == "advmeta sweep --grid x"
    release(tmp_path / "sweep")
    assert not path.exists()


def test_a_live_holder_refuses_a_second_run(tmp_path: Path) -> None:
    """Another live process holds it (here: a child that waits on its stdin until the test ends,
    whose record is in the lock)."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        folder = tmp_path / "sweep"
        folder.mkdir()
        stat = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        (folder / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": child.pid,
                                                    "proc_start": stat, "command": "advmeta sweep --grid other",
                                                    "since": "then"}))
        with pytest.raises(ConfigError, match=rf"in use by another run: pid {child.pid}.*advmeta sweep --grid other"):
            acquire(folder, "advmeta sweep")
        assert read_lock(folder)["pid"] == child.pid  # untouched
    finally:
        child.communicate()  # closing its stdin ends it


@pytest.mark.parametrize("content", ["dead", "reused", "garbage"])
def test_a_dead_holders_lock_is_taken_over(tmp_path: Path, content: str) -> None:
    folder = tmp_path / "sweep"
    folder.mkdir()
    if content == "garbage":
        (folder / LOCK_NAME).write_text("{not json")
    else:
        # "reused": our own pid with another start time stands for a pid the kernel gave to a
        # new process after the holder died.
        pid = _dead_pid() if content == "dead" else os.getppid()
        (folder / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "proc_start": "1",
                                                    "command": "old", "since": "then"}))
    acquire(folder, "new")
    assert read_lock(folder)["pid"] == os.getpid() and read_lock(folder)["command"] == "new"


def test_another_hosts_lock_holds(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"host": "elsewhere.example", "pid": 1, "command": "x", "since": "t"}))
    with pytest.raises(ConfigError, match="elsewhere.example"):
        acquire(folder, "y")


def test_output_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="cannot create it"):
        acquire(f, "y")


def test_folder_lock_releases_on_error_and_skips_uris(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with folder_lock(str(tmp_path / "s"), "cmd"):
            assert read_lock(tmp_path / "s") is not None
            raise RuntimeError("boom")
    assert read_lock(tmp_path / "s") is None
    with folder_lock("s3://bucket/sweep", "cmd"):
        pass  # remote storage: nothing to lock here


def test_annotate_adds_to_the_held_lock_and_reap_ignores_non_sessions(tmp_path: Path) -> None:
    from advmeta.lock import annotate, reap_ray_session

    with folder_lock(str(tmp_path / "s"), "cmd"):
        annotate(ray_session="/tmp/ray/session_x")
        assert read_lock(tmp_path / "s")["ray_session"] == "/tmp/ray/session_x"
        assert read_lock(tmp_path / "s")["command"] == "cmd"
    assert read_lock(tmp_path / "s") is None
    assert reap_ray_session("/tmp/not-a-session") == 0  # never a broad kill
