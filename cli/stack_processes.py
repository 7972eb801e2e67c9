"""Long-running processes with a pid file and a log each, started detached and stopped by pid.

Every process leads a session of its own (its process group), so stopping it also stops what
it started: MLflow's and BentoML's workers, the runs a Dagster code server launched. A pid file
holds the pid and the process's start time, so a pid the system reused for another process is
never taken for ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HealthCheck = Callable[[], bool]


class StackError(RuntimeError):
    """A stack process cannot start or stop; the message is one line for the user."""


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (or holds it bound)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class Managed:
    """One process of the stack: how to start it, where its pid and log go, when it is healthy."""

    name: str
    command: list[str]
    env: dict[str, str]
    folder: Path
    health: HealthCheck
    port: int | None = None
    host: str = "127.0.0.1"
    port_setting: str = ""
    cwd: Path | None = None
    start_timeout_s: float = 120.0
    after_start: Callable[[], None] | None = None
    _popen: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def pid_file(self) -> Path:
        """``<folder>/<name>.pid``: the pid and the start time of the running process."""
        return self.folder / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        """``<folder>/<name>.log``: the process's standard output and error."""
        return self.folder / f"{self.name}.log"

    def process(self) -> psutil.Process | None:
        """The running process of the pid file, or None (no file, or the process is gone)."""
        try:
            record = json.loads(self.pid_file.read_text())
            proc = psutil.Process(int(record["pid"]))
            if abs(proc.create_time() - float(record["started"])) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except (OSError, ValueError, KeyError, psutil.Error):
            return None

    def running(self) -> bool:
        """Whether the process of the pid file is alive."""
        return self.process() is not None

    def healthy(self) -> bool:
        """Alive and answering its health check."""
        if not self.running():
            return False
        try:
            return bool(self.health())
        except Exception:
            return False

    def start(self) -> bool:
        """Start the process unless it runs already; wait until healthy. True if started now."""
        launched = self.launch()
        self.wait()
        return launched

    def check_port(self) -> None:
        """Refuse a port another process holds (one line naming the setting to change)."""
        if self.port is not None and not self.running() and port_in_use(self.host, self.port):
            hint = f" or set {self.port_setting}" if self.port_setting else ""
            raise StackError(
                f"port {self.port} on {self.host} ({self.name}) is taken by another process: "
                f"stop it{hint}"
            )

    def launch(self) -> bool:
        """Start the process detached unless it runs already; True if started now."""
        if self.running():
            return False
        self.check_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} start {self.name}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        started = psutil.Process(self._popen.pid).create_time()
        self.pid_file.write_text(json.dumps({"pid": self._popen.pid, "started": started}))
        return True

    def wait(self) -> None:
        """Wait until healthy, then run ``after_start``; stop it and raise if it never is."""
        popen = self._popen
        if not self._wait_healthy(self.start_timeout_s, popen):
            exited = popen is not None and popen.poll() is not None
            self.stop()
            why = (
                "exited at start-up"
                if exited
                else (f"did not become healthy within {self.start_timeout_s:.0f} s")
            )
            raise StackError(f"{self.name} {why}: see {self.log_file}")
        if popen is not None and self.after_start is not None:
            self.after_start()
        self._popen = None

    def _wait_healthy(self, timeout: float, popen: subprocess.Popen | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if popen is not None and popen.poll() is not None:
                return False
            if self.healthy():
                return True
            time.sleep(0.5)
        return False

    def stop(self, timeout: float = 60.0) -> bool:
        """SIGTERM the process group, SIGKILL it after ``timeout``; True if something ran."""
        proc = self.process()
        self.pid_file.unlink(missing_ok=True)
        if proc is None:
            return False
        group = _members(proc)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(group, timeout=timeout)
        for leftover in alive:
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        psutil.wait_procs(alive, timeout=10)
        return True

    def pause(self) -> None:
        """SIGSTOP the process group: it stops answering but keeps its state (fault tests)."""
        proc = self._require()
        os.killpg(proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the process group after :meth:`pause`."""
        proc = self._require()
        os.killpg(proc.pid, signal.SIGCONT)

    def _require(self) -> psutil.Process:
        proc = self.process()
        if proc is None:
            raise StackError(f"{self.name} is not running")
        return proc


def _members(proc: psutil.Process) -> list[psutil.Process]:
    """The process and every descendant (they share its session)."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]
