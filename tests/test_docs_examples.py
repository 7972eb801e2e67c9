"""Every command and example of README.md and docs/*.md is checked, most of them by running it.

The shell blocks are split into commands and each goes to the check of its program: the cheap
ones run as documented (``fraudops env``, ``fraudops simulate`` at a tiny scale, the
``fraudops-model`` commands on a copy of a tiny registry, ``make -n``), the curl examples
run against a real service on a tiny home and their answers are compared with the answers the
docs print, and the long-running tools (the demo, dbt, the Dagster CLI, Feast) are checked
for what the docs promise: the options parse, the assets, partitions, dbt variables and
sub-commands exist, the ports are the Makefile's. A command no check knows fails the test:
a new kind of example needs a check here. The Python blocks are checked for the names they
import and the attributes they use.
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest
import yaml

from fraudops.settings import REPO_ROOT, Settings, get_settings
from tests.conftest import TINY
from tests.serving import fixtures as fx
from tests.serving.conftest import registry, registry_copy, world  # noqa: F401

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
BIN = Path(sys.executable).parent
SEPARATORS = {"&&", "||", ";", "|", "&"}
# Tools the suite cannot run against a deployment; their examples must name files that exist.
DEPLOYMENT_TOOLS = {"docker", "kubectl", "helm"}
# Need a PostgreSQL server and its dumps; the backup runbook is exercised by hand.
DATABASE_TOOLS = {"pg_dump", "pg_restore"}
# What a scoring answer carries that does not depend on the trained model.
DETERMINISTIC = ("transaction_id", "model_version", "features_as_of", "degraded")
DECISIONS = {"approve", "review", "decline"}


@dataclass
class Command:
    """One documented command line: where it is, its text, its working folder, its output."""

    path: Path
    line: int
    text: str
    cwd: Path
    output: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"

    @property
    def answer(self) -> str:
        return "\n".join(self.output)


@dataclass
class Block:
    path: Path
    lang: str
    line: int
    lines: list[str]


def fenced_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file."""
    blocks, current = [], None
    for number, text in enumerate(path.read_text().splitlines(), 1):
        fence = re.match(r"^\s*```(\S*)\s*$", text)
        if fence and current is None:
            current = Block(path, fence.group(1).lower(), number + 1, [])
        elif fence:
            blocks.append(current)
            current = None
        elif current is not None:
            current.lines.append(text)
    return blocks


def _complete(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return not text.rstrip().endswith("\\")


def _words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars="&|;")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def simple_commands(text: str) -> list[list[str]]:
    """The simple commands of a command line, split at ``&&``, ``;``, ``|`` (words each)."""
    commands, words = [], []
    for word in _words(text):
        if word in SEPARATORS:
            commands.append(words)
            words = []
        else:
            words.append(word)
    return [c for c in [*commands, words] if c]


def _json_complete(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def shell_commands(block: Block) -> list[Command]:
    """The block's commands, continuation lines joined, the printed answers attached."""
    commands: list[Command] = []
    buffer, start = "", 0
    cwd = REPO_ROOT
    for offset, line in enumerate(block.lines):
        stripped = line.strip()
        last = commands[-1] if commands else None
        printing = last is not None and last.output and not _json_complete(last.answer)
        if not buffer and last is not None and (printing or stripped.startswith(("{", "["))):
            last.output.append(line)  # what the previous command prints
            continue
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if not buffer:
            start = block.line + offset
        buffer = f"{buffer}\n{line}" if buffer else line
        if not _complete(buffer):
            continue
        command = Command(block.path, start, buffer, cwd)
        commands.append(command)
        for words in simple_commands(buffer):
            if words[0] == "cd":
                cwd = (cwd / words[1]).resolve()
        buffer = ""
    assert not buffer, f"{block.path}:{start}: unfinished command {buffer!r}"
    return commands


INLINE = re.compile(r"`((?:\.venv/bin/|make |eval )[^`]+)`")


def inline_commands(path: Path) -> list[Command]:
    """Commands quoted in the prose (`` `.venv/bin/fraudops env` ``), outside code blocks."""
    commands, fenced = [], False
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"^\s*```", text):
            fenced = not fenced
        elif not fenced:
            commands += [Command(path, number, m, REPO_ROOT) for m in INLINE.findall(text)]
    return commands


def documented_commands() -> list[Command]:
    """Every shell command of the README and the docs, in code blocks and in the prose."""
    fenced = [
        command
        for path in DOCS
        for block in fenced_blocks(path)
        if block.lang in SHELL
        for command in shell_commands(block)
    ]
    return fenced + [command for path in DOCS for command in inline_commands(path)]


def _program(word: str, cwd: Path) -> str:
    """The program a command's first word names; a path must exist from the working folder."""
    if "/" in word:
        assert (cwd / word).exists(), f"{word} does not exist in {cwd}"
        return Path(word).name
    return word


# --- the Makefile ---------------------------------------------------------------------------

MAKEFILE = REPO_ROOT / "Makefile"


def make_targets() -> set[str]:
    """The targets the Makefile defines."""
    return set(re.findall(r"^([a-z][\w-]*):(?!=)", MAKEFILE.read_text(), flags=re.MULTILINE))


def make_dry_run(*args: str) -> str:
    """What ``make -n`` would run (nothing runs)."""
    run = subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def _listen(target: str, *overrides: str) -> tuple[str, int]:
    """Host and port a make target's tool is started on."""
    recipe = make_dry_run(target, *overrides).splitlines()[-1]
    host = re.search(r"--host (\S+)", recipe).group(1)
    port = int(re.search(r"--port (\d+)", recipe).group(1))
    return host, port


UI_TARGETS = ("dev", "serve", "feast-ui", "mlflow-ui")


def test_the_tools_listen_on_loopback_on_distinct_overridable_ports():
    listening = {target: _listen(target) for target in UI_TARGETS}
    assert {host for host, _ in listening.values()} == {"127.0.0.1"}
    ports = [port for _, port in listening.values()]
    assert len(set(ports)) == len(ports), listening
    assert listening["dev"][1] == 3000 and listening["serve"][1] == 3001
    assert _listen("serve", "SERVE_PORT=4001") == ("127.0.0.1", 4001)
    assert _listen("dev", "DAGSTER_PORT=4000")[1] == 4000


def test_every_make_target_the_docs_mention_exists():
    targets = make_targets()
    mentioned = {
        (path.relative_to(REPO_ROOT).as_posix(), target)
        for path in DOCS
        for target in re.findall(r"`make ([a-z][\w-]*)[^`]*`", path.read_text())
    }
    mentioned |= {
        (command.where, words[1])
        for command in documented_commands()
        for words in simple_commands(command.text)
        if words[0] == "make"
    }
    assert sorted((where, t) for where, t in mentioned if t not in targets) == []


def test_the_ports_the_docs_give_are_the_makefile_s():
    ports = {target: _listen(target)[1] for target in UI_TARGETS}
    for command in documented_commands():
        for words in simple_commands(command.text):
            if words[0] == "make" and words[1] in ports:
                said = re.findall(r"127\.0\.0\.1:(\d+)", command.text)
                assert [int(p) for p in said] in ([], [ports[words[1]]]), command.where


# --- checks per program ---------------------------------------------------------------------


@dataclass
class Context:
    """What the checks share: a runtime folder, a registry copy, the served tiny setup."""

    home: Path
    registry: str
    service_url: Callable[[], str]
    tmp: Path

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDOPS_")}
        return {
            **base,
            "FRAUDOPS_HOME": str(self.home),
            "DAGSTER_HOME": str(self.home / "dagster"),
            "FRAUDOPS_MLFLOW_TRACKING_URI": self.registry,
            "FRAUDOPS_SIM_CUSTOMERS": "5",
            "FRAUDOPS_SIM_TERMINALS": "10",
            **extra,
        }


def _run(args: list[str], ctx: Context, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, env=ctx.env(), capture_output=True, text=True, timeout=300, check=False
    )


def _click_parses(app, program: str, args: list[str]) -> None:
    """The arguments parse as the sub-command's options (nothing runs)."""
    import typer

    group = typer.main.get_command(app)
    if args[0].startswith("-"):  # an option of the group itself, such as --help
        return
    assert args[0] in group.commands, f"{program} has no command {args[0]}"
    parent = group.make_context(program, [], resilient_parsing=True)
    group.commands[args[0]].make_context(args[0], list(args[1:]), parent=parent)


# The fraudops commands run as documented; the demo takes minutes and is tests/cli's.
FRAUDOPS_RUNS = {"env", "simulate", "--help", "init"}
MODEL_RUNS = {"list", "promote", "rollback", "--help"}


def _invoke(app, program: str, args: list[str], ctx: Context):
    """Run a command line in this process, in the context's environment."""
    from typer.testing import CliRunner

    env = {k: v for k, v in ctx.env().items() if k.startswith(("FRAUDOPS_", "DAGSTER_"))}
    cleared = {k: None for k in os.environ if k.startswith("FRAUDOPS_") and k not in env}
    return CliRunner().invoke(app, args, env={**cleared, **env}, prog_name=program)


def check_fraudops(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    from cli.main import app

    args = words[1:]
    _click_parses(app, "fraudops", args)
    if args[0] == "demo":  # its arguments pass the checks; the run itself is not started
        with mock.patch("cli.demo.run_demo"):
            result = _invoke(app, "fraudops", args, ctx)
        assert result.exit_code == 0, f"{command.where}: {result.output}"
        return
    if args[0] not in FRAUDOPS_RUNS:
        return
    if "--out" in args:  # a folder of this test's own
        args[args.index("--out") + 1] = str(ctx.tmp / "extracts")
    result = _invoke(app, "fraudops", args, ctx)
    assert result.exit_code == 0, f"{command.where}: {result.output}"


def check_fraudops_model(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    from cli.model import app

    args = words[1:]
    _click_parses(app, "fraudops-model", args)
    if args[0] not in MODEL_RUNS:
        return
    result = _invoke(app, "fraudops-model", args, ctx)
    assert result.exit_code == 0, f"{command.where}: {result.output}"
    if args[0] == "promote":
        assert result.stdout.strip() == f"version {args[1]} is now champion"


def check_eval(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    inner = re.fullmatch(r"\$\((.*)\)", words[1])
    assert inner, f"{command.where}: eval of {words[1]!r}"
    shell = f'eval "$({inner.group(1)})" && env -0'
    run = subprocess.run(
        ["bash", "-c", shell], cwd=cwd, env=ctx.env(), capture_output=True, text=True
    )
    assert run.returncode == 0, f"{command.where}: {run.stderr}"


def check_cd(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    assert len(words) == 2, command.where


def check_make(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    assert cwd == REPO_ROOT, f"{command.where}: make runs in {cwd}, which has no Makefile"
    assert words[1] in make_targets(), f"{command.where}: no target {words[1]}"
    make_dry_run(*words[1:])


def _dbt_reads(name: str) -> bool:
    """Whether the dbt project reads the var ``name`` (directly or as a run day)."""
    used = _dbt_vars_used()
    return any(re.search(rf"{call}\(\s*['\"]{name}['\"]", used) for call in ("var", "run_day"))


def _dbt_vars_used() -> str:
    project = REPO_ROOT / "dbt_project"
    sources = [p for p in project.rglob("*") if p.suffix in {".sql", ".yml"}]
    return "\n".join(p.read_text() for p in sources if "target" not in p.parts)


def check_dbt(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    from dbt.cli.main import cli

    assert cwd == REPO_ROOT / "dbt_project", f"{command.where}: dbt outside its project"
    group, args = cli, words[1:]
    while args and hasattr(group, "commands") and args[0] in group.commands:
        group, args = group.commands[args[0]], args[1:]
    assert group is not cli and not hasattr(group, "commands"), command.where
    # Parsed from this process's folder: the project's folder is given as the command's own.
    where = ["--profiles-dir", str(cwd), "--project-dir", str(cwd)]
    with group.make_context(group.name, [*args, *where]) as parsed:
        variables = parsed.params.get("vars") or {}  # dbt parses the YAML itself
    if isinstance(variables, str):
        variables = yaml.safe_load(variables) or {}
    for name in variables:
        assert _dbt_reads(name), f"{command.where}: the dbt project reads no var {name}"


def check_feast(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    from feast.cli.cli import cli

    group, args = cli, words[1:]
    while args and hasattr(group, "commands") and args[0] in group.commands:
        group, args = group.commands[args[0]], args[1:]
    assert group is not cli, command.where
    if group.name == "ui":
        assert (
            "--port" not in args or int(args[args.index("--port") + 1]) == _listen("feast-ui")[1]
        ), f"{command.where}: not make feast-ui's port"
        # Feast's UI listens on every interface unless told otherwise.
        host = args[args.index("--host") + 1] if "--host" in args else "0.0.0.0"
        assert host == _listen("feast-ui")[0], f"{command.where}: feast ui on {host}"


def check_bentoml(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    assert words[1] == "serve", command.where
    service = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())["service"]
    assert words[2] == service, command.where
    host, port = _listen("serve")
    assert words[words.index("--host") + 1] == host, command.where
    assert int(words[words.index("--port") + 1]) == port, f"{command.where}: not make serve's"


@functools.cache
def _asset_graph():
    from orchestration.definitions import build_definitions

    return build_definitions().resolve_asset_graph()


def check_dagster(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    import dagster as dg

    assert words[1:3] == ["asset", "materialize"], command.where
    importlib.import_module(words[words.index("-m") + 1])
    graph = _asset_graph()
    keys = [dg.AssetKey.from_user_string(k) for k in words[words.index("--select") + 1].split(",")]
    assert all(graph.has(key) for key in keys), command.where
    if "--partition-range" in words:
        first, last = words[words.index("--partition-range") + 1].split("...")
        for key in keys:
            partitions = graph.get(key).partitions_def
            assert partitions.has_partition_key(first), command.where
            assert partitions.has_partition_key(last), command.where


def check_deployment(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    files = [words[i + 1] for i, w in enumerate(words) if w in ("-f", "--file")]
    for name in files:
        assert (cwd / name).exists(), f"{command.where}: {name} does not exist"


def check_curl(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    url = ctx.service_url()
    text = re.sub(r"http://127\.0\.0\.1:\d+", url, command.text)
    run = subprocess.run(
        ["bash", "-c", text],
        env={**ctx.env(), "KEY": "fraudops-dev-key"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"{command.where}: {run.stderr}"
    answer = json.loads(run.stdout)
    if "/v1/score" in text:
        assert set(answer) >= set(DETERMINISTIC) | {"score", "decision"}, answer
        assert 0.0 <= answer["score"] <= 1.0 and answer["decision"] in DECISIONS, answer
    if command.output:
        documented = json.loads(command.answer)
        assert set(answer) == set(documented), f"{command.where}: {answer}"
        for key in DETERMINISTIC:
            if key in documented:
                assert answer[key] == documented[key], f"{command.where}: {key} {answer}"
        if "decision" in documented:
            assert documented["decision"] in DECISIONS


def check_export(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    for word in words[1:]:
        _known_variable(word, command.where)


def check_python(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    assert words[1] == "-m", f"{command.where}: python runs a module of the project"
    module = words[2]
    # `python -m` from the working folder finds its modules there first (benchmarks/, ...).
    source = cwd.joinpath(*module.split("."))
    local = source.with_suffix(".py").exists() or (source / "__main__.py").exists()
    assert local or importlib.util.find_spec(module), f"{command.where}: no module {module}"
    if module == "features.store":  # prints the Feast environment: cheap, so it runs
        run = _run([str(BIN / "python"), *words[1:]], ctx, cwd)
        assert run.returncode == 0, f"{command.where}: {run.stderr}"


def check_nothing(words: list[str], command: Command, ctx: Context, cwd: Path) -> None:
    """Shell syntax around commands (a loop's head, an export) needs no check of its own."""


CHECKS: dict[str, Callable[[list[str], Command, Context, Path], None]] = {
    "fraudops": check_fraudops,
    "fraudops-model": check_fraudops_model,
    "eval": check_eval,
    "cd": check_cd,
    "make": check_make,
    "dbt": check_dbt,
    "feast": check_feast,
    "bentoml": check_bentoml,
    "dagster": check_dagster,
    "curl": check_curl,
    "export": check_export,
    "python": check_python,
    "for": check_nothing,
    "done": check_nothing,
    **dict.fromkeys(DEPLOYMENT_TOOLS, check_deployment),
    **dict.fromkeys(DATABASE_TOOLS, check_nothing),
}


ASSIGNMENT = re.compile(r"^([A-Za-z_]\w*)=")


def _known_variable(word: str, where: str) -> None:
    """A ``FRAUDOPS_*`` variable a command sets must be a setting."""
    name = ASSIGNMENT.match(word).group(1)
    if name.startswith("FRAUDOPS_DBT_"):  # read by the dbt project when a run executes
        day = name.removeprefix("FRAUDOPS_DBT_").lower()
        if _dbt_reads(day):
            return
    if name.startswith("FRAUDOPS_"):
        field = name.removeprefix("FRAUDOPS_").lower()
        assert field in Settings.model_fields, f"{where}: {name} is no setting"


def _program_words(words: list[str], where: str) -> list[str]:
    """The words from the program on: a loop's keyword and ``NAME=value`` prefixes dropped."""
    if words and words[0] in {"do", "then"}:
        words = words[1:]
    while words and ASSIGNMENT.match(words[0]):
        _known_variable(words[0], where)
        words = words[1:]
    return words


# --- the served tiny setup for the curl examples --------------------------------------------

# The documented curl examples score a transaction of the day the online store holds after the
# demo; the tiny simulation here ends the day before, so its online store holds the same day.
TINY_DAYS = 20


def live_day() -> dt.date:
    """The day whose start the online store holds after the demo at its defaults.

    The demo ingests sim_days days, serves the next one and then runs its closed loop, which
    materializes the online store for the next day after each of its demo_loop_days days.
    """
    defaults = Settings.model_fields
    days = defaults["sim_days"].default + defaults["demo_loop_days"].default
    return defaults["sim_start_date"].default + dt.timedelta(days=days)


@pytest.fixture(scope="module")
def docs_feast_repo(tmp_path_factory) -> Path:
    """A Feast repo whose online store holds the features of the demo's live day."""
    from lakehouse.ingestion import ingest_simulation

    start = live_day() - dt.timedelta(days=TINY_DAYS)
    home = tmp_path_factory.mktemp("docs_world") / "var"
    settings = get_settings(home=home, **{**TINY, "sim_days": TINY_DAYS, "sim_start_date": start})
    lakehouse = ingest_simulation(settings)
    features = fx.build_world(lakehouse.settings)
    return fx.build_feast_repo(home.parent / "repo", features)


@pytest.fixture
def service_url(tmp_path, registry_copy, docs_feast_repo, start_docs_server):  # noqa: F811
    """Start the service for the curl examples on first use: its base URL."""
    started: list[str] = []

    def url() -> str:
        if not started:
            env = fx.service_env(tmp_path / "service", registry_copy, docs_feast_repo)
            started.append(start_docs_server(env).url)
        return started[0]

    return url


@pytest.fixture
def start_docs_server():
    servers = []

    def start(env):
        server = fx.server_process(env).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_every_documented_command_does_what_the_docs_say(
    tmp_path,
    registry_copy,  # noqa: F811
    service_url,
):
    ctx = Context(tmp_path / "var", registry_copy, service_url, tmp_path)
    commands = documented_commands()
    assert len(commands) > 10
    unknown, wrong = [], []
    for command in commands:
        cwd = command.cwd
        for words in simple_commands(command.text):
            try:
                words = _program_words(words, command.where)
                if not words:
                    continue
                program = _program(words[0], cwd)
                check = CHECKS.get(program)
                if check is None:
                    unknown.append(f"{command.where}: {program}")
                    continue
                check(words, command, ctx, cwd)
            except AssertionError as exc:  # every wrong example is listed, not the first only
                problem = " ".join(str(exc).split()).removeprefix(f"{command.where}: ")
                wrong.append(f"{command.where}: {problem[:300]}")
            if words and words[0] == "cd":
                cwd = (cwd / words[1]).resolve()
    assert not unknown, "no check knows these commands (add one here):\n" + "\n".join(unknown)
    assert not wrong, "these commands do not do what the docs say:\n" + "\n".join(wrong)


def test_the_readme_curl_example_answers_what_the_readme_shows():
    [curl] = [c for c in documented_commands() if c.path.name == "README.md" and "curl" in c.text]
    assert curl.output, "README.md shows no answer for its curl example"
    documented = json.loads(curl.answer)
    assert documented["degraded"] is False
    sent = json.loads(re.search(r"-d '(.*)'", curl.text, flags=re.DOTALL).group(1))
    when = dt.datetime.fromisoformat(sent["transaction"]["timestamp"])
    # After the demo the online store holds the features as of that day's start: a transaction
    # of an earlier day finds none valid for its time and is scored degraded.
    assert when.date() == live_day()
    assert documented["features_as_of"] == f"{live_day()}T00:00:00Z"
    # Ids the tiny simulation has too, so the test service answers for the same entities.
    assert sent["transaction"]["customer_id"] <= TINY["sim_customers"]
    assert sent["transaction"]["terminal_id"] <= TINY["sim_terminals"]


# --- Python examples ------------------------------------------------------------------------


def python_examples() -> list[Block]:
    """The Python blocks of the README and the docs."""
    return [block for path in DOCS for block in fenced_blocks(path) if block.lang == "python"]


def _resolve(node: ast.expr, names: dict[str, object]) -> object | None:
    """The object an expression names, where imports and constructor calls make it known."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, names)
        return getattr(owner, node.attr, None) if owner is not None else None
    if isinstance(node, ast.Call):
        made = _resolve(node.func, names)
        return made if isinstance(made, type) else None  # an instance: check on its class
    return None


@pytest.mark.parametrize("block", python_examples(), ids=lambda b: f"{b.path.name}:{b.line}")
def test_python_examples_use_names_that_exist(block):
    tree = ast.parse(textwrap.dedent("\n".join(block.lines)))
    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = importlib.import_module(
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(module, alias.name, None)
                if value is None:
                    value = importlib.import_module(f"{node.module}.{alias.name}")
                names[alias.asname or alias.name] = value
    # Names bound to what a known callable returns (a class instance) are known too.
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and (made := _resolve(node.value, names)):
                names[target.id] = made
    missing = [
        f"line {block.line + node.lineno - 1}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and _resolve(node.value, names) is not None
        and _resolve(node, names) is None
    ]
    assert missing == [], f"{block.path.name}: names that do not exist"
