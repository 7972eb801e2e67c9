"""Run the Dagster daemon as a subprocess, so sensors tick and requested runs are launched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fraudops.settings import REPO_ROOT

CODE_LOCATION = "orchestration.definitions"


@dataclass
class DaemonProcess:
    """``dagster-daemon run`` on the code location; ``env`` carries the settings and
    ``DAGSTER_HOME`` (``fraudops.environ.settings_env``)."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    launched_at: float = 0.0

    @property
    def dagster_home(self) -> Path:
        """The instance folder the daemon works on."""
        return Path(self.env.get("DAGSTER_HOME") or os.environ["DAGSTER_HOME"])

    def launch(self) -> DaemonProcess:
        """Start the daemon process without waiting for it (:meth:`wait_ready` waits)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).with_name("dagster-daemon")),
            "run",
            "-m",
            CODE_LOCATION,
            "--log-level",
            "warning",
        ]
        env = {**os.environ, **self.env}
        self.launched_at = time.time()
        with self.log_path.open("ab") as out:
            # A session of its own: the daemon and the code server it spawns stop together.
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 120.0) -> DaemonProcess:
        """Wait until the sensor daemon has written a heartbeat since the launch; on an exit or
        after ``timeout`` the daemon is stopped and the error raised."""
        if self.process is None:
            self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Dagster daemon exited at start-up; see {self.log_path}")
            if sensor_heartbeat_since(self.dagster_home, self.launched_at):
                return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"the Dagster daemon sent no heartbeat in {timeout:.0f} s")

    def start(self, timeout: float = 120.0) -> DaemonProcess:
        """Start the daemon and wait until its sensor daemon has written a heartbeat."""
        return self.launch().wait_ready(timeout)

    def stop(self, timeout: float = 60.0) -> int:
        """Stop the daemon (SIGTERM, then SIGKILL after ``timeout``); returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sensor_heartbeat_since(dagster_home: Path, started: float) -> bool:
    """Whether the sensor daemon of the instance in ``dagster_home`` beat after ``started``."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        beats = instance.get_daemon_heartbeats()
    beat = beats.get("SENSOR")
    return beat is not None and beat.timestamp >= started
