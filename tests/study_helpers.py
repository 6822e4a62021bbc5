"""Helpers of the study tests: a tiny space, tiny settings, one CPU thread, the PostgreSQL server."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
import torch

from tests.tools.faults import TINY_SPACE
from explore.search import StudySettings

POSTGRES_URL = os.environ.get(
    "EXPLORE_TEST_POSTGRES_URL",
    "postgresql://{user}:{password}@127.0.0.1:{port}/{db}".format(
        user=os.environ.get("EXPLORE_PG_USER", "explore"),
        password=os.environ.get("EXPLORE_PG_PASSWORD", "explore-test-pw"),
        port=os.environ.get("EXPLORE_PG_PORT", "55432"),
        db=os.environ.get("EXPLORE_PG_DB", "explore_test"),
    ),
)
"""The server that tests/start_postgres.sh starts (same defaults)."""

FIXTURES = Path(__file__).resolve().parent / "fixtures"
"""Fixture files of the tests (README "Layout": ``tests/fixtures/``)."""
FIXED_SPACE = (FIXTURES / "spaces" / "fixed.toml").read_text(encoding="utf-8")
"""A space of one point: every trial builds the same architecture."""

TINY_ARGS = ["--dataset", "synthetic", "--max-train", "64", "--max-val", "32", "--batch-size", "32",
             "--epochs", "1", "--latency-repeats", "5"]
"""CLI options of a trial that takes about a second on one CPU thread."""


def write_space(folder: Path, text: str = TINY_SPACE, name: str = "space.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def tiny_settings(tmp_path: Path, **changes) -> StudySettings:
    """Settings of a tiny study on synthetic data in ``tmp_path/runs``."""
    fields = {"space": str(write_space(tmp_path)), "study_name": "t", "trials": 2, "out": str(tmp_path / "runs"),
              "dataset": "synthetic", "max_train": 64, "max_val": 32, "batch_size": 32, "epochs": 1.0,
              "latency_repeats": 5, "heartbeat_s": 1}
    fields.update(changes)
    return StudySettings(**fields)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment of `explore` subprocesses: one torch thread each, no inherited storage."""
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env.pop("EXPLORE_STORAGE", None)
    env.pop("EXPLORE_INJECT_FAULTS", None)
    return env


def explore_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "explore.cli", *args]


@pytest.fixture
def one_thread():
    """Train on one CPU thread (quick and steady on small shared machines)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def postgres_url() -> str:
    """The test server's URL; fails under CI (CI=true) and skips elsewhere when it is unreachable."""
    try:
        import sqlalchemy

        from explore.search import driver_url

        engine = sqlalchemy.create_engine(driver_url(POSTGRES_URL), connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any reason the server cannot be used
        reason = (f"PostgreSQL test server not reachable ({type(exc).__name__}); start it with "
                  "`bash tests/start_postgres.sh` (the README's test command does)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return POSTGRES_URL


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
