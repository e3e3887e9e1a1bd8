-- An order cannot arrive before it was placed; if it does, the timestamps are wrong and days_to_deliver
-- would be negative.
select
    order_id,
    created_at,
    delivered_at

from {{ ref('stg_greenery__orders') }}

where delivered_at < created_at
