"""Import Feast without the Prometheus series of its feature server.

``import feast`` imports ``feast.metrics`` (through ``feast.feature_server``), which creates
Feast's feature-server metrics at import time: in the process's default Prometheus registry
and, in a Prometheus multiprocess process such as a BentoML worker, in the metric files that
the worker's ``/metrics`` aggregates. Feast records them only inside its own feature server
started with metrics on (``feast serve --metrics``), which the platform does not run, so
anywhere else they stay 0 forever (the scoring service exposed nine such ``feast_*`` series).
Feast's ``metrics`` options only switch the recording off; the series exist all the same.

``import_feast`` imports Feast with those metrics held in process memory and unregistered, so
no exposition shows them, and undoes the environment Feast sets for its own multiprocess mode
(a temporary ``PROMETHEUS_MULTIPROC_DIR`` that would put every later metric of the process,
and its children, into files). It must run before the first ``import feast`` of the process:
importing this module runs it, and ``features.repo`` (so ``features.store``) imports it first.
"""

import os
import sys

MULTIPROCESS_VARIABLES = ("PROMETHEUS_MULTIPROCESS_DIR", "PROMETHEUS_MULTIPROC_DIR")


def import_feast() -> None:
    """Import Feast once, keeping its feature-server metrics out of every exposition."""
    if "feast.metrics" in sys.modules:
        return
    # Imported first, so the value class follows the environment as it was before Feast.
    import prometheus_client
    from prometheus_client import values
    from prometheus_client.metrics import MetricWrapperBase

    before = {name: os.environ.get(name) for name in MULTIPROCESS_VARIABLES}
    value_class = values.ValueClass
    values.ValueClass = values.MutexValue
    try:
        import feast.metrics
    finally:
        values.ValueClass = value_class
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
    for metric in vars(feast.metrics).values():
        if isinstance(metric, MetricWrapperBase):
            prometheus_client.REGISTRY.unregister(metric)


import_feast()
