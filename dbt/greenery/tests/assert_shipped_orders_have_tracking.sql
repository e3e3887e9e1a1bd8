{{ config(severity='warn') }}

-- Once an order leaves the warehouse it has a carrier and a tracking number; customers ask for them.
select
    order_id,
    status,
    tracking_id,
    shipping_service

from {{ ref('stg_greenery__orders') }}

where
    status in ('shipped', 'delivered')
    and (tracking_id is null or shipping_service is null)
