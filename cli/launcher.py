"""Run the scoring service as a ``bentoml serve`` subprocess (demo, tests, benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fraudops.environ import exported
from fraudops.settings import REPO_ROOT, Settings, get_settings

SERVICE = "serving.service:FraudScoring"


def bentoml_home(settings: Settings, port: int) -> Path:
    """The BentoML home of the service instance on ``port``: under the runtime folder.

    BentoML keeps its Prometheus multiprocess folder there and empties it when a server
    starts; a home shared with other BentoML processes (``~/bentoml`` by default) lets any of
    them wipe this service's counters, which then stop moving in ``/metrics``.
    """
    from serving.runtime import state_dir

    return (settings.serving_bentoml_dir or state_dir(settings) / "bentoml") / f"port-{port}"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServiceProcess:
    """A real BentoML server on loopback; ``env`` is added to this process's environment.

    The caller's ``env`` carries the settings and the telemetry opt-outs
    (``fraudops.environ.settings_env``). ``BENTOML_HOME`` is the instance's own
    (:func:`bentoml_home` of those settings) unless ``env`` names one (a bento store to serve
    from, for example); one inherited from this process's environment is not used.
    """

    env: dict[str, str]
    log_path: Path
    service: str = SERVICE
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> ServiceProcess:
        """Start the server and wait until ``/healthz`` answers (its output goes to log_path)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("ab")
        command = [
            str(Path(sys.executable).with_name("bentoml")),
            "serve",
            self.service,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        env = {**os.environ, "BENTOML_HOME": str(self._bentoml_home()), **self.env}
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited at start-up:\n{self._log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(
            f"the service did not answer within {timeout:.0f} s; see {self.log_path}"
        )

    def _bentoml_home(self) -> Path:
        """The instance's BentoML home, from the settings ``env`` describes."""
        if "BENTOML_HOME" in self.env:
            return Path(self.env["BENTOML_HOME"])
        with exported(self.env):
            return bentoml_home(get_settings(), self.port)

    def _log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log (why it did not start)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 60.0) -> int:
        """Graceful shutdown (SIGTERM: the prediction log is flushed); returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise
        return self.process.returncode
