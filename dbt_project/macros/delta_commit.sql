{#- The on-run-end hook (dbt_project.yml): the marts this invocation staged (the `delta`
    materialization) are committed to their Delta tables only when every node of the
    invocation passed, warnings allowed. One failed or skipped model, test or unit test, in any
    layer, keeps every mart at the version it had: their staged files are deleted and so are
    their DuckDB views, which read those files. A skip alone would not do: dbt build runs a
    mart's own tests after the mart, and skips a node after a failed test only when the node
    depends on every model that test reads (not so for a relationships test). -#}
{% macro commit_delta_marts(results) %}
    {%- if execute -%}
        {%- set passed = ['success', 'pass', 'warn', 'no-op'] -%}
        {%- set failed = [] -%}
        {%- for result in results if result.status not in passed -%}
            {%- do failed.append(result.node.name ~ ': ' ~ result.status) -%}
        {%- endfor -%}
        {%- do adapter.store_relation(
            'delta',
            api.Relation.create(identifier='on_run_end'),
            [],
            '',
            'parquet',
            {'delta_action': 'finish', 'invocation_id': invocation_id, 'failed': failed},
        ) -%}
        {%- if failed -%}
            {%- for result in results if result.node.config.materialized == 'delta'
                and result.status == 'success' -%}
                {%- do adapter.drop_relation(api.Relation.create(
                    database=result.node.database,
                    schema=result.node.schema,
                    identifier=result.node.alias,
                    type='view',
                )) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}
