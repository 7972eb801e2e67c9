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

from fraudops.settings import REPO_ROOT

SERVICE = "serving.service:FraudScoring"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServiceProcess:
    """A real BentoML server on loopback; ``env`` is added to this process's environment.

    The caller's ``env`` carries the settings and the telemetry opt-outs
    (``fraudops.environ.settings_env``); nothing is added here.
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
        env = {**os.environ, **self.env}
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
