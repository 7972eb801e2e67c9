{#- Fails when the newest `column_name` of the model is older than the newest
    `other_column` of `other` by more than `tolerance_days`: a feed that stopped arriving. -#}
{% test is_not_behind(model, column_name, other, other_column, tolerance_days=0) %}

select
    (select max({{ column_name }}) from {{ model }}) as newest,
    (select max({{ other_column }}) from {{ other }}) as newest_other,
where newest is null or newest < newest_other - {{ tolerance_days }}

{% endtest %}
