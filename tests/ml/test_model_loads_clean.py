"""A registered model loads where the repository is not installed, from its own requirements.

The model is logged and registered by the real code (``ml.tracking``), then loaded from the
registry by the interpreter of a new virtualenv, in isolated mode (``-I``: no PYTHONPATH, no
working folder on ``sys.path``), started outside the checkout. The virtualenv holds only what
``pip install -r`` of the model's own ``requirements.txt`` puts there, from the package index
that this machine's pip is configured with (as ``make setup`` installs the project); the
fraudops distribution, its editable-install finder and the checkout are not reachable, so the
model's own code must come with it. The install is most of the test's cost (about 50 s on
2 cores without byte-compiling: MLflow, XGBoost and torch are 2.4 GB installed), hence the
``slow`` mark: it still runs with the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from packaging.requirements import Requirement

from fraudops.settings import REPO_ROOT, get_settings
from ml import tracking
from ml.model import model_input
from ml.pyfunc import MODEL_CODE
from ml.train import train_xgboost
from tests.ml.conftest import PARAMS

pytestmark = pytest.mark.slow

LOAD = """
import json, sys
import mlflow.pyfunc
import pandas as pd

registry, model_uri, inputs = sys.argv[1:4]
mlflow.set_tracking_uri(registry)
mlflow.set_registry_uri(registry)
model = mlflow.pyfunc.load_model(model_uri)
given = json.loads(open(inputs).read())
frame = pd.DataFrame(given["data"], columns=given["columns"]).astype(given["dtypes"])
print(json.dumps({
    "scores": [float(x) for x in model.predict(frame)],
    "modules": {n: getattr(m, "__file__", None) for n, m in sys.modules.items()
                if n.split(".")[0] in ("fraudops", "ml")},
    "path": sys.path,
}))
"""


def _requirements_file(model_uri: str) -> Path:
    """The model's own requirements.txt, as the registry stores it."""
    return Path(mlflow.pyfunc.get_model_dependencies(model_uri, format="pip"))


def _requirements(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def _outside_env() -> dict[str, str]:
    """This environment less what points an interpreter at this virtualenv or the checkout."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tiny_training_frame):
    """A real scoring model, logged by ml.tracking and registered: (settings, version, model)."""
    root = tmp_path_factory.mktemp("clean_model")
    settings = get_settings(home=root / "var")
    tracking.configure(settings)
    model = train_xgboost(tiny_training_frame, PARAMS, seed=7)
    with mlflow.start_run():
        uri = tracking.log_scoring_model(model, tiny_training_frame, root / "work")
    version = mlflow.register_model(uri, settings.model_name).version
    return settings, str(version), model


def test_the_registered_model_loads_in_a_clean_virtualenv(
    registered, tiny_training_frame, tmp_path
):
    settings, version, model = registered
    model_uri = f"models:/{settings.model_name}/{version}"
    requirements_file = _requirements_file(model_uri)
    requirements = _requirements(requirements_file)
    assert not any(Requirement(r).name == "fraudops" for r in requirements)

    # A virtualenv of its own (not --system-site-packages), the model's requirements only.
    venv = tmp_path / "clean"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=_outside_env())
    install = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",  # byte-compiling 2.4 GB of packages would double the cost
            "--disable-pip-version-check",
            "-r",
            str(requirements_file),
        ],
        cwd=tmp_path,
        env=_outside_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    freeze = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"],
        env=_outside_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "fraudops" not in freeze.lower()

    example = model_input(tiny_training_frame.head(50)).reset_index(drop=True)
    inputs = tmp_path / "inputs.json"
    inputs.write_text(
        json.dumps(
            {
                "columns": list(example.columns),
                "data": example.to_numpy().tolist(),
                "dtypes": {c: str(t) for c, t in example.dtypes.items()},
            }
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _outside_env()
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", LOAD, settings.tracking_uri, model_uri, inputs],
        cwd=elsewhere,
        env={**env, "MLFLOW_DISABLE_TELEMETRY": "true"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])

    np.testing.assert_allclose(loaded["scores"], model.predict_proba(example), rtol=1e-6)
    repo = str(REPO_ROOT)
    assert [p for p in loaded["path"] if p.startswith(repo)] == []
    # The model's code came with the model (its code/ folder), nothing else of the project.
    modules = loaded["modules"]
    assert sorted(modules) == sorted(MODEL_CODE)
    for name, file in modules.items():
        assert not file.startswith(repo), f"{name} was imported from the checkout"
        assert f"{os.sep}code{os.sep}" in file, f"{name} is not the model's own code: {file}"
