with

order_items as (

    select * from {{ ref('stg_greenery__order_items') }}

),

products as (

    select * from {{ ref('stg_greenery__products') }}

),

aggregated as (

    select
        order_items.order_id,
        sum(order_items.quantity) as item_count,
        count(distinct order_items.product_id) as product_count,
        sum(order_items.quantity * products.price) as items_cost

    from order_items

    inner join products
        on order_items.product_id = products.product_id

    group by order_items.order_id

)

select * from aggregated
