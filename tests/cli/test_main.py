"""The ``fraudops`` command line: the environment it prints for the tools the Makefile starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fraudops.environ import settings_env
from fraudops.settings import get_settings

FRAUDOPS = str(Path(sys.executable).with_name("fraudops"))


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDOPS_")}
    return subprocess.run(
        [FRAUDOPS, *args], env={**base, **env}, capture_output=True, text=True, check=False
    )


def test_env_prints_the_settings_environment_for_a_shell(tmp_path):
    home = tmp_path / "var with 'quote'"
    printed = _run("env", FRAUDOPS_HOME=str(home), FRAUDOPS_SIM_DAYS="12")
    assert printed.returncode == 0, printed.stderr
    # What a shell sees after eval equals what a subprocess of the platform would get.
    shell = subprocess.run(
        ["bash", "-c", f"{printed.stdout}\nenv -0"], capture_output=True, text=True, check=True
    )
    seen = dict(item.split("=", 1) for item in shell.stdout.split("\0") if "=" in item)
    expected = settings_env(get_settings(home=home, sim_days=12))
    assert {name: seen.get(name) for name in expected} == expected


def test_env_refuses_invalid_settings_in_one_line():
    printed = _run("env", FRAUDOPS_SIM_DAYS="many")
    assert printed.returncode == 2
    assert printed.stdout == ""
    assert printed.stderr.strip().count("\n") == 0
    assert "FRAUDOPS_SIM_DAYS" in printed.stderr
