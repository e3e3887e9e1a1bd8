with

users as (

    select * from {{ ref('dim_users') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

orders_per_user as (

    select
        user_id,
        count(*) as order_count,
        min(created_at) as first_order_at,
        max(created_at) as last_order_at,
        sum(order_total) as lifetime_order_total

    from orders

    group by user_id

),

final as (

    select
        users.user_id,
        coalesce(orders_per_user.order_count, 0) as order_count,
        orders_per_user.first_order_at,
        orders_per_user.last_order_at,
        coalesce(orders_per_user.lifetime_order_total, 0) as lifetime_order_total,
        coalesce(orders_per_user.order_count, 0) >= 2 as is_repeat_customer

    from users

    left join orders_per_user
        on users.user_id = orders_per_user.user_id

)

select * from final
