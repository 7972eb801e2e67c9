"""Every Feast object of the repo for a given settings object, in the order ``apply`` takes."""

from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, Project
from feast.data_source import DataSource

from features.repo.data_sources import mart_sources, transaction_request_source
from features.repo.entities import customer, terminal
from features.repo.feature_services import build_feature_services
from features.repo.feature_views import FeatureViews, build_feature_views
from fraudops.settings import Settings

FeastObject = Project | Entity | FeatureView | OnDemandFeatureView | FeatureService

PROJECT_DESCRIPTION = "Card-fraud features: dbt marts in Delta, served to the fraud model."


def build_project(settings: Settings) -> Project:
    """The Feast project of ``settings`` (the CLI requires the repo to define it)."""
    return Project(name=settings.feast_project, description=PROJECT_DESCRIPTION)


def build_views(settings: Settings) -> FeatureViews:
    """The feature views reading the marts of ``settings``."""
    return build_feature_views(mart_sources(settings))


def build_sources(settings: Settings) -> list[DataSource]:
    """Fresh copies of the data sources the views read (``apply`` registers them first)."""
    return [*mart_sources(settings).all(), transaction_request_source()]


def build_objects(settings: Settings) -> list[FeastObject]:
    """The project, entities, feature views and feature services for ``settings``."""
    views = build_views(settings)
    return [
        build_project(settings),
        customer,
        terminal,
        views.customer_features,
        views.terminal_features,
        views.transaction_features,
        *build_feature_services(views),
    ]
