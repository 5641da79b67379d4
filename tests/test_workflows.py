"""The GitHub workflow (.github/workflows/ci.yml) cannot run here; lint it for real instead."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "ci.yml"


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed (it is in the dev extra: pip install -e '.[dev]')")
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603


def test_actionlint_passes() -> None:
    result = _run(_tool("actionlint"), str(WORKFLOW))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs-on: [", 1))
    assert _run(_tool("actionlint"), str(broken)).returncode != 0


def test_zizmor_finds_nothing() -> None:
    result = _run(_tool("zizmor"), "--offline", "--no-progress", str(WORKFLOW))
    assert result.returncode == 0, result.stdout + result.stderr


def test_neon_job_uses_direct_url_for_migrations_and_pooled_url_for_tests() -> None:
    text = WORKFLOW.read_text()
    assert "NEON_DATABASE_URL: ${{ steps.branch.outputs.db_url }}" in text
    assert "TEST_DATABASE_URL: ${{ steps.branch.outputs.db_url_pooled }}" in text
    assert "if: always() && steps.branch.outputs.branch_id != ''" in text
