-- What is the conversion rate by product? Sessions that bought it / sessions that viewed it.
select
    product_name,
    sessions_with_view,
    sessions_with_purchase,
    conversion_rate

from {{ ref('product_conversion') }}

order by conversion_rate desc nulls last, product_name asc
