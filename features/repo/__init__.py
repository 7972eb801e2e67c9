"""The Feast feature repository of the platform (definitions only; see docs/features.md)."""

# Before the definitions import Feast: its feature-server metrics stay out of /metrics.
import features.repo.feast_import  # noqa: F401
