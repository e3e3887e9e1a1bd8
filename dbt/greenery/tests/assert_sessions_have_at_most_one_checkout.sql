-- A session places at most one order; fct_sessions.order_id relies on it.
select
    session_id,
    count(*) as checkout_count

from {{ ref('stg_greenery__events') }}

where event_type = 'checkout'

group by session_id

having count(*) > 1
