"""The feature layer: feature definitions, the Feast repository and access to the feature store."""
