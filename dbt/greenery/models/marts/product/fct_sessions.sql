{{
    config(
        materialized='incremental',
        unique_key='session_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        tags=['incremental'],
    )
}}

with

events as (

    select * from {{ ref('stg_greenery__events') }}

),

-- On an incremental run, the sessions with an event in the window or an event that arrived since the session
-- was last built. Each is rebuilt from all of its events, so a session that spans the window's edge, or that a
-- late event continues, comes out exactly as in a full build.
sessions_in_window as (

    select distinct session_id

    from events

    {% if is_incremental() %}
    where {{ incremental_window('events', 'created_at', 'session_ended_at', 'session_id') }}
    {% endif %}

),

session_events as (

    select events.*

    from events

    inner join sessions_in_window
        on events.session_id = sessions_in_window.session_id

),

aggregated as (

    select
        session_id,
        -- A session belongs to one user (tested on stg_greenery__events); min() just picks it.
        min(user_id) as user_id,
        min(created_at) as session_started_at,
        max(created_at) as session_ended_at,
        count(*) filter (where event_type = 'page_view') as page_view_count,
        count(*) filter (where event_type = 'add_to_cart') as add_to_cart_count,
        count(*) filter (where event_type = 'checkout') as checkout_count,
        count(*) filter (where event_type = 'package_shipped') as package_shipped_count,
        -- At most one checkout per session (tested), so this is the session's order.
        max(order_id) filter (where event_type = 'checkout') as order_id,
        max(_loaded_at) as _loaded_at

    from session_events

    group by session_id

),

final as (

    select
        session_id,
        user_id,
        session_started_at,
        session_ended_at,
        cast(session_started_at as date) as session_date,
        page_view_count,
        add_to_cart_count,
        checkout_count,
        package_shipped_count,
        page_view_count > 0 as has_page_view,
        add_to_cart_count > 0 as has_add_to_cart,
        checkout_count > 0 as has_checkout,
        package_shipped_count > 0 as has_package_shipped,
        order_id,
        _loaded_at

    from aggregated

)

select * from final
