-- How many users do we have?
select count(*) as user_count

from {{ ref('dim_users') }}
