{#- Key combinations that occur more than once, e.g. duplicate (entity, as-of) rows. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

select
    {{ combination_of_columns | join(', ') }},
    count(*) as nb_rows,
from {{ model }}
group by all
having count(*) > 1

{% endtest %}
