"""The Feast feature repository of the platform (definitions only; see docs/features.md)."""
