with

source as (

    select * from {{ source('greenery', 'events') }}

),

renamed as (

    select
        event_id,
        session_id,
        user_id,
        event_type,
        page_url,
        order_id,
        product_id,
        {{ to_utc_timestamp('created_at') }} as created_at,
        {{ to_utc_timestamp('_loaded_at') }} as _loaded_at

    from source

)

select * from renamed
