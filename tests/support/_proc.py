"""Processes, ports and private directories, and `Server`: the lifecycle PgCluster and PgBouncer share."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from types import TracebackType
from typing import Any, Self

SERVICE_USER = "postgres"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class RunAs:
    """OS identity a server runs under; PostgreSQL and PgBouncer refuse root."""

    user: str | None
    uid: int
    gid: int

    def subprocess_kwargs(self) -> dict[str, Any]:
        """subprocess keyword arguments that drop privileges to this identity."""
        if self.user is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": os.getgrouplist(self.user, self.gid)}

    def chown(self, path: Path) -> None:
        """Hand files we wrote as root over to the server user."""
        if self.user is not None:
            for each in [path, *path.rglob("*")]:
                os.chown(each, self.uid, self.gid, follow_symlinks=False)


def resolve_run_as() -> RunAs:
    """`postgres` when root (created if missing), else ourselves."""
    if os.geteuid() != 0:
        return RunAs(None, os.getuid(), os.getgid())
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        entry = _create_service_user()
    return RunAs(SERVICE_USER, entry.pw_uid, entry.pw_gid)


def _create_service_user() -> pwd.struct_passwd:
    """On a machine without PostgreSQL's packages, create the system user they would create.

    With the flags Debian's postgresql-common uses, so a later `apt-get install postgresql` adopts it.
    """
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd is None:
        raise RuntimeError("OS user 'postgres' does not exist and useradd is missing; servers cannot run as root")
    argv = [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER]
    subprocess.run(argv, check=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)  # noqa: S603
    return pwd.getpwnam(SERVICE_USER)


def free_port(host: str = HOST) -> int:
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


def tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until true or `timeout` passes; never waits forever."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def run_captured(
    argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> CompletedProcess[str]:
    """Run a tool to completion, output captured as text; a non-zero exit is the caller's to judge."""
    return subprocess.run(  # noqa: S603 (argv from the tests, no shell)
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
    )


def run_python(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> CompletedProcess[str]:
    """This interpreter with `args` (see `run_captured`)."""
    return run_captured([sys.executable, *args], cwd=cwd, env=env, timeout=timeout)


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


class Server:
    """One foreground server process in a private temp dir, as a context manager.

    Subclasses say how to set the directory up (`prepare`), what to run (`argv`) and when it serves
    (`ready`). A first start that loses its port to another process retries on a new one; later
    starts keep the port, so clients' URLs survive a stop and start.
    """

    name = "server"
    timeout = 30.0
    cleanup_signal: int = signal.SIGTERM

    def __init__(self) -> None:
        self.owner = resolve_run_as()
        self.port = free_port()
        self._base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._served = False

    @property
    def base_dir(self) -> Path:
        """The private temp dir (0700, owned by the server user)."""
        if self._base is None:
            raise RuntimeError(f"{self.name} not started")
        return self._base

    @property
    def pid(self) -> int | None:
        """The running process's id."""
        return None if self._proc is None else self._proc.pid

    @property
    def log_file(self) -> Path:
        """Everything the process wrote to stdout and stderr."""
        return self.base_dir / f"{self.name}.log"

    def prepare(self) -> None:
        """Write what the first start needs into `base_dir`."""

    def argv(self) -> list[str]:
        """The command line, in the foreground."""
        raise NotImplementedError

    def ready(self) -> bool:
        """True once the process serves clients."""
        raise NotImplementedError

    def start(self) -> None:
        """Launch and wait until `ready`; a clear error with the log's tail if it never is."""
        if self._proc is not None:
            return
        if self._base is None:
            self._base = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
            self.owner.chown(self._base)
            self.prepare()
            self.owner.chown(self._base)
        for _ in range(3):
            logged = self.log_file.stat().st_size if self.log_file.exists() else 0
            if self._launch():
                self._served = True
                return
            lost_port = b"Address already in use" in self.log_file.read_bytes()[logged:]
            if self._served or not lost_port:
                break
            self.port = free_port()
        raise RuntimeError(f"{self.name} failed to start; log {self.log_file}:\n{tail(self.log_file)}")

    def _launch(self) -> bool:
        """Start the process; True once it is `ready`, else it is killed."""
        with self.log_file.open("ab") as log:
            self._proc = proc = subprocess.Popen(  # noqa: S603 (argv built by us, no shell)
                self.argv(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.owner.subprocess_kwargs(),
            )
        if wait_until(lambda: proc.poll() is not None or self.ready(), self.timeout) and proc.poll() is None:
            return True
        self.halt(signal.SIGKILL)
        return False

    def halt(self, sig: int) -> None:
        """Send `sig` and wait for the exit (SIGKILL if it lingers)."""
        if self._proc is not None:
            stop_process(self._proc, sig, self.timeout)
            self._proc = None

    def cleanup(self) -> None:
        """Stop and delete every file; safe to call twice."""
        try:
            self.halt(self.cleanup_signal)
        finally:
            if self._base is not None:
                shutil.rmtree(self._base, ignore_errors=True)
                self._base = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.cleanup()
