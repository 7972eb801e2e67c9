"""Feast entities: the two keys the entity features hang on."""

from feast import Entity, ValueType

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.INT64,
    description="A card holder (raw/customers.customer_id, 1-based).",
)

terminal = Entity(
    name="terminal",
    join_keys=["terminal_id"],
    value_type=ValueType.INT64,
    description="A payment terminal (raw/terminals.terminal_id, 1-based).",
)
