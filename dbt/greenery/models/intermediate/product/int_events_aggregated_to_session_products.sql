with

events as (

    select * from {{ ref('stg_greenery__events') }}

),

orders as (

    select * from {{ ref('stg_greenery__orders') }}

),

order_items as (

    select * from {{ ref('stg_greenery__order_items') }}

),

product_events as (

    select
        session_id,
        product_id,
        bool_or(event_type = 'page_view') as has_page_view,
        bool_or(event_type = 'add_to_cart') as has_add_to_cart

    from events

    where product_id is not null

    group by session_id, product_id

),

-- A session bought a product when the order of its checkout contains the product. Going through orders
-- (not straight from the event's order_id to the items) counts only orders that exist, and makes the source
-- tests on orders guard this model too.
purchases as (

    select distinct
        events.session_id,
        order_items.product_id

    from events

    inner join orders
        on events.order_id = orders.order_id

    inner join order_items
        on orders.order_id = order_items.order_id

    where events.event_type = 'checkout'

),

session_products as (

    select
        coalesce(product_events.session_id, purchases.session_id) as session_id,
        coalesce(product_events.product_id, purchases.product_id) as product_id,
        coalesce(product_events.has_page_view, false) as has_page_view,
        coalesce(product_events.has_add_to_cart, false) as has_add_to_cart,
        purchases.session_id is not null as has_purchase

    from product_events

    full outer join purchases
        on
            product_events.session_id = purchases.session_id
            and product_events.product_id = purchases.product_id

)

select * from session_products
