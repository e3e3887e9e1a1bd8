{{ config(severity='warn') }}

-- A session is one visitor's visit. If a session id shows up for two users, the tracker reused it and the
-- session's user in fct_sessions is one of them, picked arbitrarily.
select
    session_id,
    count(distinct user_id) as user_count

from {{ ref('stg_greenery__events') }}

group by session_id

having count(distinct user_id) > 1
