"""Online and batch scoring: BentoML service, model and feature sources, prediction log."""
