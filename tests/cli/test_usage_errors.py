"""Bad arguments to ``fraudops`` and ``fraudops-model`` are one-line usage errors (exit 2).

No traceback, no framed panel, and nothing starts (no simulation, no Dagster instance, no
registry change) before the arguments are checked. The cases run in-process; a few run
through the installed entry points as well, as a user types them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cli.main import app as fraudops_app
from cli.model import app as model_app
from tests.serving import fixtures as fx

BIN = Path(sys.executable).parent
TINY = ["--customers", "5", "--terminals", "10"]


def _run(program: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # A timeout, not a timing assert: a command that spins instead of failing must not hang.
    return subprocess.run(
        [str(BIN / program), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def user_env(home) -> dict[str, str]:
    """The environment of a user with an empty runtime folder of their own."""
    return {**os.environ, "FRAUDOPS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}


class _Answer:
    """What a command printed and its exit status, in-process or from a subprocess."""

    def __init__(self, status: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = status, stdout, stderr


def _invoke(app, *args: str, env: dict[str, str]) -> _Answer:
    name = "fraudops-model" if app is model_app else "fraudops"
    result = CliRunner().invoke(app, list(args), env=env, prog_name=name)
    return _Answer(result.exit_code, result.stdout, result.stderr)


def _assert_usage_error(result, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "╭" not in result.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["demo", "--days", "-3"], ["fraudops demo:", "--days", "-3"]),
        (["demo", "--days", "0"], ["fraudops demo:", "--days"]),
        (["demo", "--days", "many"], ["fraudops demo:", "--days"]),
        (["demo", "--customers", "-5"], ["--customers"]),
        # Too short for the training protocol: it would fail in retraining, minutes later.
        (["demo", "--days", "30"], ["fraudops demo:", "--days", "at least 56", "got 30"]),
        (["simulate", "--start", "2018-13-45"], ["fraudops simulate:", "--start", "2018-13-45"]),
        (["simulate", "--customers", "-5"], ["fraudops simulate:", "--customers", "-5"]),
        (["simulate", "--days", "0"], ["--days"]),
        (["simulate", "--days", "abc"], ["--days"]),
        (["simulate", "--bogus"], ["No such option", "--bogus"]),
        (["bogus"], ["fraudops:", "bogus"]),
    ],
)
def test_fraudops_answers_bad_arguments_in_one_line(user_env, home, args, words):
    _assert_usage_error(_invoke(fraudops_app, *args, env=user_env), *words)
    assert not (home / "landing").exists()  # nothing was simulated
    assert not (home / "dagster").exists()  # no Dagster instance was touched


def test_simulate_refuses_a_file_as_its_output_folder(user_env, tmp_path):
    a_file = tmp_path / "extracts.parquet"
    a_file.write_bytes(b"not a folder")
    result = _invoke(fraudops_app, "simulate", *TINY, "--out", str(a_file), env=user_env)
    _assert_usage_error(result, "--out", "not a folder")
    assert a_file.read_bytes() == b"not a folder"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["promote", "abc"], ["fraudops-model promote:", "abc"]),
        (["promote", "0"], ["fraudops-model promote:", "'0'"]),
        (["promote", "999"], ["version 999 is not registered", "1, 2, 3"]),
        (["promote"], ["Missing argument"]),
        (["rollback"], ["fraudops-model rollback:", "champion"]),
        (["promote", "2", "--bogus"], ["--bogus"]),
    ],
)
def test_fraudops_model_answers_bad_arguments_in_one_line(user_env, registry_copy, args, words):
    env = {**user_env, "FRAUDOPS_MLFLOW_TRACKING_URI": registry_copy}
    _assert_usage_error(_invoke(model_app, *args, env=env), *words)
    # The champion did not move.
    client = MlflowClient(registry_copy, registry_copy)
    assert str(client.get_model_version_by_alias(fx.MODEL_NAME, "champion").version) == "1"


def test_promote_moves_the_champion_to_a_registered_version(user_env, registry_copy):
    env = {**user_env, "FRAUDOPS_MLFLOW_TRACKING_URI": registry_copy}
    result = _invoke(model_app, "promote", "3", "--reason", "test", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "version 3 is now champion"
    client = MlflowClient(registry_copy, registry_copy)
    assert str(client.get_model_version_by_alias(fx.MODEL_NAME, "champion").version) == "3"
    # Now there is an earlier champion to go back to.
    back = _invoke(model_app, "rollback", env=env)
    assert back.returncode == 0, back.stderr
    assert str(client.get_model_version_by_alias(fx.MODEL_NAME, "champion").version) == "1"


def test_fraudops_model_on_an_empty_registry_says_what_to_do(user_env):
    listed = _invoke(model_app, "list", env=user_env)
    assert listed.returncode == 0, listed.stderr
    assert "make demo" in listed.stdout
    _assert_usage_error(_invoke(model_app, "promote", "1", env=user_env), "make demo")
    _assert_usage_error(_invoke(model_app, "gate", env=user_env), "challenger")


@pytest.mark.parametrize(
    ("program", "args", "words"),
    [
        ("fraudops", ["demo", "--days", "-3"], ["fraudops demo:", "--days"]),
        ("fraudops", ["simulate", "--start", "2018-13-45"], ["2018-13-45"]),
        ("fraudops-model", ["promote", "abc"], ["fraudops-model promote:", "abc"]),
    ],
)
def test_the_installed_commands_answer_in_one_line(user_env, home, program, args, words):
    _assert_usage_error(_run(program, *args, env=user_env), *words)
    assert not (home / "dagster").exists()
