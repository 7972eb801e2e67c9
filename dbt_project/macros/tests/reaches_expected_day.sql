{#- Fails when the newest day of `column_name` with rows (`count_column` > 0) is older than the
    newest day expected: the run's to_date, or the newest day of the model itself (an inventory
    also lists the days the ingestion log says were ingested). A missing newest day would
    otherwise pass every test and silently shorten every window. -#}
{% test reaches_expected_day(model, column_name, count_column) %}

with

bounds as (

    select
        max({{ column_name }}) filter (where {{ count_column }} > 0) as newest_day,
        greatest(max({{ column_name }}), {{ to_date() }}) as expected_day,

    from {{ model }}

)

select newest_day, expected_day,
from bounds
where newest_day is null or newest_day < expected_day

{% endtest %}
