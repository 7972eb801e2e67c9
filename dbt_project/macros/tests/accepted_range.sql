{#- Rows where `column_name` lies outside [min_value, max_value] (bounds optional). The hub's
    dbt_utils is unreachable here, so the project carries the generic tests it needs. -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none) %}

select *
from {{ model }}
where {{ column_name }} is null
    {% if min_value is not none %} or {{ column_name }} < {{ min_value }} {% endif %}
    {% if max_value is not none %} or {{ column_name }} > {{ max_value }} {% endif %}

{% endtest %}
