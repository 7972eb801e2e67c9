-- One row per day of the transactions feed, ingested or expected: the inventory the day spine
-- and the completeness checks are built on (macros/completeness.sql).
{{ feed_inventory('transactions', 'tx_date', 'nb_transactions') }}
