{#- Days missing between the first and the last day of the date column `column_name`: a hole
    in a daily feed, which would make every window over it silently wrong. -#}
{% test no_missing_days(model, column_name) %}

with

days as (

    select distinct {{ column_name }} as day from {{ model }}

),

expected as (

    select cast(first_day + cast(offset_days as integer) as date) as day,
    from
        (select min(day) as first_day, max(day) as last_day from days) as bounds,
        range(0, date_diff('day', bounds.first_day, bounds.last_day) + 1) as offsets(offset_days)

)

select expected.day as missing_day,
from expected
anti join days on days.day = expected.day

{% endtest %}
