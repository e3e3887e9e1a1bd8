with

sessions as (

    select * from {{ ref('fct_sessions') }}

),

steps_per_day as (

    select
        session_date,
        count(*) as session_count,
        count(*) filter (where has_page_view) as sessions_with_page_view,
        count(*) filter (where has_add_to_cart) as sessions_with_add_to_cart,
        count(*) filter (where has_checkout) as sessions_with_checkout,
        count(*) filter (where has_package_shipped) as sessions_with_package_shipped

    from sessions

    group by session_date

),

final as (

    select
        session_date,
        session_count,
        sessions_with_page_view,
        sessions_with_add_to_cart,
        sessions_with_checkout,
        sessions_with_package_shipped,
        {{ safe_ratio('sessions_with_add_to_cart', 'sessions_with_page_view') }} as view_to_cart_rate,
        {{ safe_ratio('sessions_with_checkout', 'sessions_with_add_to_cart') }} as cart_to_checkout_rate,
        {{ safe_ratio('sessions_with_checkout', 'sessions_with_page_view') }} as view_to_checkout_rate,
        sessions_with_page_view - sessions_with_add_to_cart as view_to_cart_drop_off_count,
        sessions_with_add_to_cart - sessions_with_checkout as cart_to_checkout_drop_off_count,
        sessions_with_checkout - sessions_with_package_shipped as checkout_to_shipped_drop_off_count

    from steps_per_day

)

select * from final
