"""Every Feast object of the repo for a given settings object, in the order ``apply`` takes."""

from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView

from features.repo.data_sources import mart_sources
from features.repo.entities import customer, terminal
from features.repo.feature_services import build_feature_services
from features.repo.feature_views import FeatureViews, build_feature_views
from fraudops.settings import Settings

FeastObject = Entity | FeatureView | OnDemandFeatureView | FeatureService


def build_views(settings: Settings) -> FeatureViews:
    """The feature views reading the marts of ``settings``."""
    return build_feature_views(mart_sources(settings))


def build_objects(settings: Settings) -> list[FeastObject]:
    """Entities, feature views and feature services for ``settings``."""
    views = build_views(settings)
    return [
        customer,
        terminal,
        views.customer_features,
        views.terminal_features,
        views.transaction_features,
        *build_feature_services(views),
    ]
