-- The raw tables of greenery's shop database, as the course loaded them (see the course data README).
-- Table names are unqualified: apply_schema() creates the raw schema (include.settings.RAW_SCHEMA) and puts it
-- first on the search_path before running this file. Safe to run again: nothing here drops or changes data.
--
-- Types follow the course, with two deliberate choices:
--   * timestamps are timestamptz: the source writes UTC instants (ISO 8601 with `Z`), and timestamptz keeps them
--     unambiguous whatever the session time zone is;
--   * money is numeric(12, 2) where the course had real: exact cents, so order_total = order_cost +
--     shipping_cost - discount holds exactly. Every course value has at most two decimals.
-- Ids are text (UUID strings; promo ids are free text such as 'instruction set').
--
-- Every table also has _loaded_at: when the row arrived in this database (the insert's time; an update that
-- re-delivers a row sets it again), as EL tools stamp _fivetran_synced or _airbyte_extracted_at. The course's
-- CSV files do not have it; the database fills it. The incremental models use it to pick up events that
-- arrive after their day's run.

create table if not exists addresses (
    address_id text not null,
    address text,
    zipcode integer,
    state text,
    country text,
    _loaded_at timestamptz not null default now(),
    constraint addresses_pkey primary key (address_id)
);

create table if not exists users (
    user_id text not null,
    first_name text,
    last_name text,
    email text,
    phone_number text,
    created_at timestamptz,
    updated_at timestamptz,
    address_id text,
    _loaded_at timestamptz not null default now(),
    constraint users_pkey primary key (user_id),
    constraint users_address_id_fkey foreign key (address_id) references addresses (address_id)
);

create table if not exists promos (
    promo_id text not null,
    discount integer,
    status text,
    _loaded_at timestamptz not null default now(),
    constraint promos_pkey primary key (promo_id)
);

create table if not exists products (
    product_id text not null,
    name text,
    price numeric(12, 2),
    inventory integer,
    _loaded_at timestamptz not null default now(),
    constraint products_pkey primary key (product_id)
);

create table if not exists orders (
    order_id text not null,
    user_id text,
    promo_id text,
    address_id text,
    created_at timestamptz,
    order_cost numeric(12, 2),
    shipping_cost numeric(12, 2),
    order_total numeric(12, 2),
    tracking_id text,
    shipping_service text,
    estimated_delivery_at timestamptz,
    delivered_at timestamptz,
    status text,
    _loaded_at timestamptz not null default now(),
    constraint orders_pkey primary key (order_id),
    constraint orders_user_id_fkey foreign key (user_id) references users (user_id),
    constraint orders_promo_id_fkey foreign key (promo_id) references promos (promo_id),
    constraint orders_address_id_fkey foreign key (address_id) references addresses (address_id)
);

create table if not exists order_items (
    order_id text not null,
    product_id text not null,
    quantity integer,
    _loaded_at timestamptz not null default now(),
    constraint order_items_pkey primary key (order_id, product_id),
    constraint order_items_order_id_fkey foreign key (order_id) references orders (order_id),
    constraint order_items_product_id_fkey foreign key (product_id) references products (product_id)
);

create table if not exists events (
    event_id text not null,
    session_id text,
    user_id text,
    page_url text,
    created_at timestamptz,
    event_type text,
    order_id text,
    product_id text,
    _loaded_at timestamptz not null default now(),
    constraint events_pkey primary key (event_id),
    constraint events_user_id_fkey foreign key (user_id) references users (user_id),
    constraint events_order_id_fkey foreign key (order_id) references orders (order_id),
    constraint events_product_id_fkey foreign key (product_id) references products (product_id)
);

-- Warehouses created before _loaded_at existed: their rows count as arrived now.
alter table addresses add column if not exists _loaded_at timestamptz not null default now();
alter table users add column if not exists _loaded_at timestamptz not null default now();
alter table promos add column if not exists _loaded_at timestamptz not null default now();
alter table products add column if not exists _loaded_at timestamptz not null default now();
alter table orders add column if not exists _loaded_at timestamptz not null default now();
alter table order_items add column if not exists _loaded_at timestamptz not null default now();
alter table events add column if not exists _loaded_at timestamptz not null default now();
