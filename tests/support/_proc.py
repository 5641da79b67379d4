"""Process, port and directory helpers shared by the server launchers."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

SERVICE_USER = "postgres"


@dataclass(frozen=True)
class RunAs:
    """OS identity a server runs under; PostgreSQL and PgBouncer refuse root."""

    user: str | None
    uid: int
    gid: int

    @property
    def switches(self) -> bool:
        """True when subprocesses must drop to another user."""
        return self.user is not None


def resolve_run_as(user: str | None = None) -> RunAs:
    """Pick the identity: `user`, else `postgres` when root, else ourselves."""
    if user is None and os.geteuid() == 0:
        user = SERVICE_USER
    if user is None:
        return RunAs(None, os.getuid(), os.getgid())
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        entry = _create_service_user(user)
    return RunAs(user, entry.pw_uid, entry.pw_gid)


def _create_service_user(user: str) -> pwd.struct_passwd:
    """As root on a machine without PostgreSQL's packages, create the system user they would create.

    Only the default `postgres` user, with the flags Debian's postgresql-common uses, so a later
    `apt-get install postgresql` adopts it.
    """
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if user != SERVICE_USER or os.geteuid() != 0 or useradd is None:
        raise RuntimeError(
            f"OS user {user!r} does not exist; servers cannot run as root "
            "(apt-get install postgresql creates the 'postgres' user)"
        )
    subprocess.run(  # noqa: S603 (fixed argv, no shell)
        [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
        check=True,
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    return pwd.getpwnam(user)


def make_private_dir(prefix: str, owner: RunAs) -> Path:
    """Create a 0700 temp dir owned by `owner` so the server can write it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if owner.switches:
        os.chown(path, owner.uid, owner.gid)
    return path


def chown_tree(path: Path, owner: RunAs) -> None:
    """Hand files we wrote as root over to the server user."""
    if not owner.switches:
        return
    os.chown(path, owner.uid, owner.gid)
    for child in path.rglob("*"):
        os.chown(child, owner.uid, owner.gid, follow_symlinks=False)


def remove_dir(path: Path) -> None:
    """Delete a temp dir without letting cleanup errors hide a test failure."""
    shutil.rmtree(path, ignore_errors=True)


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for an unused port; callers retry if it gets taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    owner: RunAs,
    cwd: Path,
    log: Path,
    timeout: float,
) -> None:
    """Run a tool to completion, output appended to `log` (pipes could hang)."""
    with log.open("ab") as out:
        try:
            proc = subprocess.run(  # noqa: S603 (argv built by us, no shell)
                [os.fspath(a) for a in argv],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **identity_kwargs(owner),
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{argv[0]} timed out after {timeout}s; log {log}:\n{tail(log)}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(os.fspath(argv[0])).name} exited {proc.returncode}; log {log}:\n{tail(log)}")


class Identity(TypedDict, total=False):
    """subprocess keyword arguments selecting the child's uid/gid/groups."""

    user: int
    group: int
    extra_groups: list[int]


def identity_kwargs(owner: RunAs) -> Identity:
    """subprocess keyword arguments that drop privileges to `owner`."""
    if owner.user is None:
        return {}
    groups = os.getgrouplist(owner.user, owner.gid)
    return {"user": owner.uid, "group": owner.gid, "extra_groups": groups}


def tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until true or `timeout` passes; never waits forever."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def stop_process(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Send `sig`, then SIGKILL if the process outlives `timeout`."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a pid we started, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
