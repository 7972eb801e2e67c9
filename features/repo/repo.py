"""Entry point of the Feast CLI (``feast apply``, ``feast plan``, ``feast ui``).

The CLI collects module-level objects from the repo's files (the others are listed in
``.feastignore``), so this is the one module that reads the settings when imported: it is only
imported by the Feast CLI, never by the platform, which calls ``features.store`` instead.
The project object is one of them: without it, every command says "No project found in the
repository" and makes one up from feature_store.yaml.
"""

from features.repo.definitions import build_objects
from fraudops.settings import get_settings

(
    project,
    customer,
    terminal,
    customer_features,
    terminal_features,
    transaction_features,
    fraud_model_v1,
) = build_objects(get_settings())
