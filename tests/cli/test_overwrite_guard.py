"""``fraudops demo`` and ``simulate`` validate their arguments and keep existing data unless
``--force`` is given."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from typer.testing import CliRunner

import cli.demo
from cli.main import app
from fraudops.catalog import RAW_TRANSACTIONS
from fraudops.settings import get_settings
from lakehouse.source import extract_path

TINY = ["--customers", "5", "--terminals", "10"]


@pytest.fixture
def demo_calls(monkeypatch) -> list[dict]:
    """The demo's runs, recorded instead of executed."""
    calls: list[dict] = []
    monkeypatch.setattr(
        cli.demo, "run_demo", lambda settings, say, force=False: calls.append({"force": force})
    )
    return calls


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def _usage_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0, result.stderr
    for word in words:
        assert word in result.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--customers", "0"], "--customers"),
        (["--terminals", "-4"], "--terminals"),
        (["--days", "0"], "--days"),
        (["--days", "-1"], "--days"),
    ],
)
def test_demo_refuses_counts_below_one(home, demo_calls, args, option):
    _usage_error(_invoke("demo", *args), option)
    assert demo_calls == []
    assert not home.exists()


def test_demo_refuses_a_count_of_zero_from_the_settings_too(home, demo_calls, monkeypatch):
    monkeypatch.setenv("FRAUDOPS_SIM_DAYS", "0")
    _usage_error(_invoke("demo"), "--days", "FRAUDOPS_SIM_DAYS")
    assert demo_calls == []


def test_demo_refuses_to_replace_an_existing_lakehouse_without_force(home, demo_calls):
    uri = RAW_TRANSACTIONS.uri(get_settings())
    write_deltalake(uri, pa.table({"transaction_id": [1, 2, 3]}))
    _usage_error(_invoke("demo", *TINY), "raw/transactions", "--force")
    assert demo_calls == []
    table = DeltaTable(uri)
    assert (table.version(), table.to_pyarrow_table().num_rows) == (0, 3)

    assert _invoke("demo", *TINY, "--force").exit_code == 0
    assert demo_calls == [{"force": True}]


def test_demo_refuses_to_replace_landed_extracts_without_force(home, demo_calls):
    settings = get_settings()
    landed = extract_path(settings.landing_path, "transactions", settings.sim_start_date)
    landed.parent.mkdir(parents=True)
    landed.write_bytes(b"an extract")
    _usage_error(_invoke("demo", *TINY, "--days", "60"), "extracts", "--force")
    assert demo_calls == []
    assert landed.read_bytes() == b"an extract"


def test_demo_runs_on_an_empty_runtime_folder(home, demo_calls):
    assert _invoke("demo", *TINY, "--days", "60").exit_code == 0
    assert demo_calls == [{"force": False}]
    assert (home / "dagster" / "dagster.yaml").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--days", "0"], ["--days"]),
        (["--days", "-2"], ["--days"]),
        (["--customers", "0"], ["--customers"]),
        (["--seed", "-1"], ["--seed"]),
        (["--start", "2018-13-45"], ["--start", "2018-13-45"]),
        (["--start", "yesterday"], ["--start"]),
        (["--start", "2018-03-01"], ["--start", "FRAUDOPS_SIM_START_DATE"]),
    ],
)
def test_simulate_refuses_bad_arguments_in_one_line(home, tmp_path, args, words):
    out = tmp_path / "extracts"
    _usage_error(_invoke("simulate", *TINY, "--out", str(out), *args), *words)
    assert not out.exists()


def test_simulate_keeps_landed_extracts_unless_forced(home, tmp_path):
    out = tmp_path / "extracts"
    first = ["simulate", *TINY, "--out", str(out), "--start", "2018-04-01", "--days", "2"]
    assert _invoke(*first).exit_code == 0
    day = extract_path(out, "transactions", dt.date(2018, 4, 2))
    landed = day.read_bytes()
    day.write_bytes(b"edited by hand")

    # An overlapping range (2018-04-02 is landed) is refused and leaves the file as it is.
    again = ["simulate", *TINY, "--out", str(out), "--start", "2018-04-02", "--days", "3"]
    _usage_error(_invoke(*again), "2018-04-02", "--force")
    assert day.read_bytes() == b"edited by hand"
    assert not extract_path(out, "transactions", dt.date(2018, 4, 3)).exists()

    # The days after are free to land; --force replaces the landed ones.
    later = ["simulate", *TINY, "--out", str(out), "--start", "2018-04-03", "--days", "2"]
    assert _invoke(*later).exit_code == 0
    assert _invoke(*again, "--force").exit_code == 0
    assert day.read_bytes() == landed
