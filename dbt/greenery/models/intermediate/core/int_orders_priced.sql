with

orders as (

    select * from {{ ref('stg_greenery__orders') }}

),

promos as (

    select * from {{ ref('stg_greenery__promos') }}

),

order_items as (

    select * from {{ ref('int_order_items_aggregated_to_orders') }}

),

priced as (

    select
        orders.order_id,
        orders.user_id,
        orders.promo_id,
        orders.address_id,
        orders.created_at,
        orders.order_cost,
        orders.shipping_cost,
        coalesce(promos.discount, 0) as discount,
        orders.order_total,
        coalesce(order_items.items_cost, 0) as items_cost,
        coalesce(order_items.item_count, 0) as item_count,
        coalesce(order_items.product_count, 0) as product_count,
        orders.status,
        orders.tracking_id,
        orders.shipping_service,
        orders.estimated_delivery_at,
        orders.delivered_at

    from orders

    left join promos
        on orders.promo_id = promos.promo_id

    left join order_items
        on orders.order_id = order_items.order_id

)

select * from priced
