-- One row per day of the fraud report feed, ingested or expected: the inventory its
-- completeness check is built on (macros/completeness.sql).
{{ feed_inventory('fraud_reports', 'report_date', 'nb_reports') }}
