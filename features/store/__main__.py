"""``python -m features.store env``: shell exports that let the Feast CLI use the settings.

eval "$(.venv/bin/python -m features.store env)" && cd features/repo && feast apply
"""

from __future__ import annotations

import shlex
import sys

from features.store.config import feast_home, repo_variables
from fraudops.settings import get_settings


def main(argv: list[str]) -> int:
    """Print ``export VAR=value`` lines for feature_store.yaml's variables."""
    if argv != ["env"]:
        print("usage: python -m features.store env", file=sys.stderr)
        return 2
    settings = get_settings()
    # The embedded profile's SQLite files live here; Feast does not create the folder.
    feast_home(settings).mkdir(parents=True, exist_ok=True)
    for name, value in repo_variables(settings).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
