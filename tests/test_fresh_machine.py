"""What `make test` does on a machine with only Python: an embedded PostgreSQL, one-line skips, CI fails.

The fallback is proven end to end: a child pytest run whose PostgreSQL probe points at a closed port
must start the embedded server, say so in one line, and pass a PostgreSQL test on it.
"""

import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.support import tools
from tests.support._proc import free_port, run_python
from tests.support.pgcluster import PgCluster
from tests.support.tools import embedded_pg_bin_dir, in_ci, missing_tool, pg_has_ssl, shareable_pg_bin_dir


def test_no_reachable_postgresql_starts_the_embedded_one(project_root: Path) -> None:
    env = {name: value for name, value in os.environ.items() if name not in ("TEST_DATABASE_URL", "CI")}
    env["TODO_TEST_PG_PROBE_URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"  # nothing listens
    child = run_python(
        "-m",
        "pytest",
        "tests/routes/test_tasks.py",
        "-k",
        "postgresql and test_create_returns_201",
        "-q",
        "-p",
        "no:cacheprovider",
        "--no-cov",
        cwd=project_root,
        env=env,
        timeout=300,
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


def test_a_tls_cluster_on_the_embedded_build_asks_for_debians_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    binaries = embedded_pg_bin_dir()
    assert binaries is not None
    with pytest.raises(pytest.skip.Exception, match=r"built with TLS is missing: apt-get install postgresql"):
        PgCluster(ssl=True, bin_dir=binaries)


def test_binaries_another_user_cannot_reach_are_copied_where_it_can(tmp_path: Path) -> None:
    prefix = tmp_path / "private" / "pginstall"  # pytest's tmp dirs are 0700: `postgres` could not enter
    for part in ("bin", "lib", "share"):
        (prefix / part).mkdir(parents=True)
    (prefix / "bin" / "initdb").write_text("#!/bin/sh\n")
    (prefix / "share" / "postgres.bki").write_text("data\n")
    copied = shareable_pg_bin_dir(prefix / "bin")
    try:
        assert copied != prefix / "bin"
        assert (copied / "initdb").read_text() == "#!/bin/sh\n"
        assert (copied.parent / "share" / "postgres.bki").is_file()
        assert all(part.stat().st_mode & stat.S_IXOTH for part in [copied, *copied.parents])
        assert shareable_pg_bin_dir(prefix / "bin") == copied  # made once, reused
    finally:
        shutil.rmtree(copied.parent, ignore_errors=True)
