with

source as (

    select * from {{ source('greenery', 'addresses') }}

),

renamed as (

    select
        address_id,
        address,
        -- The raw column is an integer, which drops the leading zero of zip codes such as 02203.
        lpad(cast(zipcode as text), 5, '0') as zipcode,
        state,
        country

    from source

)

select * from renamed
