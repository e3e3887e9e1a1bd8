-- How many users have only made one purchase? Two purchases? Three or more?
select
    case when order_count >= 3 then '3+' else cast(order_count as text) end as orders_placed,
    count(*) as user_count

from {{ ref('user_order_facts') }}

where order_count >= 1

group by orders_placed

order by orders_placed
