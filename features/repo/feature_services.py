"""Feast feature services: the versioned feature sets models are trained and served with."""

from feast import FeatureService

from features.repo.feature_views import FeatureViews

FRAUD_MODEL_V1 = "fraud_model_v1"


def build_feature_services(views: FeatureViews) -> list[FeatureService]:
    """``fraud_model_v1``: the 15 FEATURE_COLUMNS of fraudops/contracts.py."""
    return [
        FeatureService(
            name=FRAUD_MODEL_V1,
            features=[
                views.transaction_features,
                views.customer_features,
                views.terminal_features,
            ],
            description="Inputs of the fraud_detector model family (FEATURE_COLUMNS).",
        )
    ]
