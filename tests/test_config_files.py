"""Where configuration and generated files come from: ./.env over backend/.env, the data dir, the dev secret.

Precedence: the environment, then `.env` in the working directory, then `backend/.env`.
"""

import os
import stat
import threading
from pathlib import Path

import pytest

from backend import config
from backend.config import ENV_FILES, Settings, read_or_create_secret


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None) -> Path:
    """A fresh working directory, and no TODO_DATA_DIR/LOG_LEVEL from the developer's shell."""
    monkeypatch.delenv("TODO_DATA_DIR", raising=False)
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_env_files_are_backend_then_working_directory() -> None:
    assert (config.BACKEND_DIR / ".env", Path(".env")) == ENV_FILES
    assert Settings.model_config["env_file"] == ENV_FILES


def test_working_directory_env_wins_over_backend_env_and_environment_wins_over_both(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend_env = workdir / "backend.env"  # stands in for backend/.env, read first
    backend_env.write_text("BETTER_AUTH_URL=http://from-backend-env\nJWT_ISSUER=backend-issuer\nLOG_LEVEL=ERROR\n")
    (workdir / ".env").write_text("BETTER_AUTH_URL=http://from-dot-env\nLOG_LEVEL=WARNING\n")
    files = (backend_env, Path(".env"))

    settings = Settings(_env_file=files)
    assert settings.better_auth_url == "http://from-dot-env"  # ./.env over backend/.env
    assert settings.jwt_issuer == "backend-issuer"  # backend/.env still read
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    assert Settings(_env_file=files).log_level == "DEBUG"  # the environment over both


def test_the_default_settings_read_the_working_directory_env(workdir: Path) -> None:
    (workdir / ".env").write_text("JWT_AUDIENCE=from-the-working-directory\n")
    assert Settings().jwt_audience == "from-the-working-directory"


def test_data_dir_is_under_the_working_directory_not_the_package(workdir: Path) -> None:
    settings = Settings(_env_file=None)
    assert settings.data_dir == workdir.resolve() / ".data"
    assert not settings.data_dir.is_relative_to(config.BACKEND_DIR)


def test_todo_data_dir_from_the_environment_or_env_file(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / ".env").write_text(f"TODO_DATA_DIR={workdir / 'from-file'}\n")
    assert Settings().data_dir == workdir / "from-file"
    monkeypatch.setenv("TODO_DATA_DIR", "relative/data")
    assert Settings().data_dir == workdir.resolve() / "relative" / "data"


def test_dev_secret_lives_in_the_data_dir(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TODO_DATA_DIR", str(workdir / "state"))
    secret = Settings(_env_file=None).secret
    assert (workdir / "state" / "dev-secret").read_text() == secret
    assert not (workdir / ".data").exists()


def test_secret_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        secret = read_or_create_secret(tmp_path / "data" / "dev-secret")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "data" / "dev-secret").stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert len(secret) >= 32
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["dev-secret"]  # no temp file left


def test_an_existing_secret_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "dev-secret"
    path.write_text("kept-secret-value-0123456789abcdefghij\n")
    assert read_or_create_secret(path) == "kept-secret-value-0123456789abcdefghij"


def test_workers_starting_together_share_one_secret(tmp_path: Path) -> None:
    """Many rounds of 8 threads racing to create the same file: all of a round read one secret."""
    for round_number in range(25):
        path = tmp_path / f"round-{round_number}" / "dev-secret"
        start = threading.Barrier(8)
        seen: list[str] = []

        def worker(target: Path = path, barrier: threading.Barrier = start, out: list[str] = seen) -> None:
            barrier.wait()
            out.append(read_or_create_secret(target))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(seen) == 8
        assert len(set(seen)) == 1
        assert seen[0]
        assert sorted(p.name for p in path.parent.iterdir()) == ["dev-secret"]
