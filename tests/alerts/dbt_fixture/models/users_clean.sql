select user_id, updated_at from {{ source('shop', 'users') }}
