-- How do users move through the product funnel, and where is the largest drop-off?
-- One row per step from page view to add to cart to checkout, the step that loses the largest share of
-- its sessions first.
with

funnel as (

    select
        sum(sessions_with_page_view) as page_view,
        sum(sessions_with_add_to_cart) as add_to_cart,
        sum(sessions_with_checkout) as checkout

    from {{ ref('product_funnel') }}

),

steps as (

    select
        'page_view -> add_to_cart' as funnel_step,
        page_view as sessions_in,
        add_to_cart as sessions_out

    from funnel

    union all

    select
        'add_to_cart -> checkout' as funnel_step,
        add_to_cart as sessions_in,
        checkout as sessions_out

    from funnel

)

select
    funnel_step,
    sessions_in,
    sessions_out,
    sessions_in - sessions_out as sessions_lost,
    round(1 - sessions_out / cast(nullif(sessions_in, 0) as numeric), 4) as drop_off_rate

from steps

order by drop_off_rate desc
