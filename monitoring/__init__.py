"""Monitoring of the scored traffic: profiles, drift, data quality, delayed-label performance.

Plain Python between ``ml``/``serving`` and ``orchestration`` (docs/monitoring.md); whylogs stays
behind :mod:`monitoring.profiles` and :mod:`monitoring.drift`.
"""
