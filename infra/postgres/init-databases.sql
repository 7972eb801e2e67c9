-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d): one
-- database per service, so that each can be backed up, restored and migrated on its own
-- (MLflow and Dagster both keep an alembic_version table, so they cannot share one).
CREATE DATABASE dagster;
CREATE DATABASE mlflow;
CREATE DATABASE feast;
