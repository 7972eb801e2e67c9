{#- As-of days on which some entity of `entities` (a relation with column `entity_column`)
    has no row: feature tables hold every entity on every day. -#}
{% test is_dense_grid(model, entity_column, entities, date_column='feature_date') %}

with

per_day as (

    select {{ date_column }} as day, count(distinct {{ entity_column }}) as nb_entities,
    from {{ model }}
    group by all

),

expected as (

    select count(distinct {{ entity_column }}) as nb_entities, from {{ entities }}

)

select per_day.day, per_day.nb_entities, expected.nb_entities as nb_expected,
from per_day
cross join expected
where per_day.nb_entities <> expected.nb_entities

{% endtest %}
