select order_id, order_total, status, created_at from {{ source('shop', 'orders') }}
