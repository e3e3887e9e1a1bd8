with

products as (

    select * from {{ ref('dim_products') }}

),

session_products as (

    select * from {{ ref('int_events_aggregated_to_session_products') }}

),

sessions_per_product as (

    select
        product_id,
        count(*) filter (where has_page_view) as sessions_with_view,
        count(*) filter (where has_add_to_cart) as sessions_with_add_to_cart,
        count(*) filter (where has_purchase) as sessions_with_purchase

    from session_products

    group by product_id

),

final as (

    select
        products.product_id,
        products.product_name,
        coalesce(sessions_per_product.sessions_with_view, 0) as sessions_with_view,
        coalesce(sessions_per_product.sessions_with_add_to_cart, 0) as sessions_with_add_to_cart,
        coalesce(sessions_per_product.sessions_with_purchase, 0) as sessions_with_purchase,
        {{ safe_ratio(
            'sessions_per_product.sessions_with_add_to_cart', 'sessions_per_product.sessions_with_view'
        ) }} as add_to_cart_rate,
        {{ safe_ratio(
            'sessions_per_product.sessions_with_purchase', 'sessions_per_product.sessions_with_view'
        ) }} as conversion_rate

    from products

    left join sessions_per_product
        on products.product_id = sessions_per_product.product_id

)

select * from final
