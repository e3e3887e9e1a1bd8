-- What is our repeat rate? Users who purchased two or more times / users who purchased.
select
    round(
        count(*) filter (where is_repeat_customer)
        / cast(nullif(count(*) filter (where order_count >= 1), 0) as numeric),
        4
    ) as repeat_rate

from {{ ref('user_order_facts') }}
