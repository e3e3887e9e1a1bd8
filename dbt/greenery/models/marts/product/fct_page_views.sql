{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        tags=['incremental'],
    )
}}

with

events as (

    select * from {{ ref('stg_greenery__events') }}

),

page_views as (

    select
        event_id,
        session_id,
        user_id,
        product_id,
        page_url,
        created_at as viewed_at,
        cast(created_at as date) as viewed_date

    from events

    where
        event_type = 'page_view'
        {% if is_incremental() %}
        -- Only the window's events: see vars start_date, end_date, lookback_hours in dbt_project.yml.
        and {{ incremental_window('created_at', 'viewed_at') }}
        {% endif %}

)

select * from page_views
