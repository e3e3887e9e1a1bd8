-- What is our overall conversion rate? Sessions with a checkout / all sessions.
select
    round(
        count(*) filter (where has_checkout) / cast(nullif(count(*), 0) as numeric), 4
    ) as conversion_rate

from {{ ref('fct_sessions') }}
