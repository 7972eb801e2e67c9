"""The ``fraudops`` command line: the environment it prints for the tools, the demo's progress."""

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


def test_a_demo_job_shows_its_assets_progress_lines_and_no_dagster_events(capsys):
    import dagster as dg

    from cli.demo import execute_with_progress

    @dg.asset
    def slow_step(context) -> None:
        context.log.info("training set: 1,234 rows built")
        context.log.debug("not for the console")
        context.log.warning("a warning the console logger prints")

    job = dg.Definitions(assets=[slow_step]).resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    lines: list[str] = []
    result = execute_with_progress(job, lines.append, instance=instance)
    assert result.success
    # The asset's own INFO line, as it was logged, and none of Dagster's event lines.
    assert lines == ["  training set: 1,234 rows built"]
    printed = capsys.readouterr()
    assert "a warning the console logger prints" in printed.err
    assert "STEP_START" not in printed.err + printed.out
    # The run's log (what the Dagster UI shows) has the line as well.
    logged = [record.user_message for record in instance.all_logs(result.run_id)]
    assert "training set: 1,234 rows built" in logged


def test_a_forced_demo_starts_from_empty_embedded_feast_stores(tmp_path):
    from cli.demo import reset_embedded_feast
    from features.store.config import feast_home

    embedded = get_settings(home=tmp_path / "embedded")
    served = get_settings(home=tmp_path / "served", feast_online_store="redis")
    for settings in (embedded, served):
        feast_home(settings).mkdir(parents=True)
        for name in ("registry.db", "online.db"):
            (feast_home(settings) / name).write_text("an earlier demo's")
        reset_embedded_feast(settings)
    # Over the earlier stores, materialization would take the new marts' days as done.
    assert sorted(p.name for p in feast_home(embedded).iterdir()) == []
    # A server-backed online store is not the demo's to reset: the local files stay too.
    assert sorted(p.name for p in feast_home(served).iterdir()) == ["online.db", "registry.db"]
