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
        cast(created_at as date) as viewed_date,
        _loaded_at

    from events

    where
        event_type = 'page_view'
        {% if is_incremental() %}
        -- The window's events and those that arrived since the last run: see incremental_window.
        and {{ incremental_window('events', 'created_at', 'viewed_at', 'event_id') }}
        {% endif %}

)

select * from page_views
