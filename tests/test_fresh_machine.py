"""What `make test` does on a machine with only Python: an embedded PostgreSQL, one-line skips, CI fails.

The fallback is proven end to end: a child pytest run whose PostgreSQL probe points at a closed port
must start the embedded server, say so in one line, and pass a PostgreSQL test on it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import tools
from tests.support._proc import free_port
from tests.support.tools import embedded_pg_bin_dir, in_ci, missing_tool, pg_has_ssl


def test_no_reachable_postgresql_starts_the_embedded_one(project_root: Path) -> None:
    env = {name: value for name, value in os.environ.items() if name not in ("TEST_DATABASE_URL", "CI")}
    env["TODO_TEST_PG_PROBE_URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"  # nothing listens
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/routes/test_tasks.py",
            "-k",
            "postgresql and test_create_returns_201",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-cov",
        ],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    output = child.stdout + child.stderr
    assert child.returncode == 0, output
    announced = [line for line in output.splitlines() if "started an embedded PostgreSQL" in line]
    assert len(announced) == 1, output
    assert "no TEST_DATABASE_URL" in announced[0]
    assert "1 passed" in output


def test_the_embedded_server_ships_with_the_dev_dependencies() -> None:
    binaries = embedded_pg_bin_dir()
    assert binaries is not None
    assert (binaries / "initdb").is_file()
    assert (binaries / "pg_ctl").is_file()
    assert not pg_has_ssl(binaries)  # so the TLS suite asks for Debian's server instead


def test_a_missing_tool_skips_locally_with_what_and_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"PgBouncer is missing: apt-get install pgbouncer"):
        missing_tool("PgBouncer", "apt-get install pgbouncer")


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_a_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"Chromium .* is missing: .*CI is set"):
        missing_tool(*tools.CHROMIUM)


@pytest.mark.parametrize(("value", "expected"), [("", False), ("false", False), ("0", False), ("true", True)])
def test_ci_detection(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected
