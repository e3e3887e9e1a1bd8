-- On average, how long does an order take from being placed to being delivered?
select
    round(avg(days_to_deliver), 2) as average_days_to_deliver,
    justify_hours(avg(delivered_at - created_at)) as average_time_to_deliver

from {{ ref('fct_orders') }}

where delivered_at is not null
