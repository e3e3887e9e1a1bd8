-- On average, how many orders do we receive per hour? Orders divided by the clock hours in which orders
-- were placed.
select
    round(
        count(*) / cast(count(distinct date_trunc('hour', created_at)) as numeric), 2
    ) as orders_per_hour

from {{ ref('fct_orders') }}
