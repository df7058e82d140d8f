-- Foundation: locations, catalog, stock positions and their ledger, API keys, idempotency,
-- and the event outbox. Every stock table is keyed by `sku` first so that it can be
-- distributed on Citus by `sku`, with positions and movements co-located.

CREATE TABLE locations (
    location_id          text PRIMARY KEY CHECK (location_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    kind                 text NOT NULL CHECK (kind IN ('store', 'warehouse')),
    name                 text NOT NULL,
    lat                  double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon                  double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    postal_code          text,
    timezone             text,
    ships                boolean NOT NULL DEFAULT true,
    pickup               boolean NOT NULL DEFAULT false,
    curbside             boolean NOT NULL DEFAULT false,
    daily_order_capacity integer CHECK (daily_order_capacity >= 0),
    pick_cost_per_unit   double precision NOT NULL DEFAULT 0.423 CHECK (pick_cost_per_unit >= 0),
    safety_stock         integer NOT NULL DEFAULT 0 CHECK (safety_stock >= 0),
    active               boolean NOT NULL DEFAULT true,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE items (
    sku        text PRIMARY KEY CHECK (sku ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name       text NOT NULL,
    weight_kg  double precision NOT NULL DEFAULT 0 CHECK (weight_kg >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The projection of the ledger. `safety_stock` NULL means "the location's default".
-- on_hand may go negative: a POS sale is never refused (the item is in the customer's hand).
CREATE TABLE stock_positions (
    sku           text NOT NULL REFERENCES items (sku),
    location_id   text NOT NULL REFERENCES locations (location_id),
    on_hand       integer NOT NULL DEFAULT 0,
    reserved      integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    safety_stock  integer CHECK (safety_stock >= 0),
    in_transit_in integer NOT NULL DEFAULT 0 CHECK (in_transit_in >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, location_id)
) WITH (fillfactor = 90);  -- room for HOT updates on the hot path

-- Append-only. Summing it per (sku, location_id) gives every position exactly.
CREATE TABLE stock_movements (
    sku              text NOT NULL,
    location_id      text NOT NULL,
    movement_id      bigint GENERATED ALWAYS AS IDENTITY,
    kind             text NOT NULL CHECK (kind IN ('receipt', 'sale', 'adjustment', 'count', 'return',
                                                   'reserve', 'release', 'commit',
                                                   'transfer_out', 'transfer_in')),
    delta_on_hand    integer NOT NULL DEFAULT 0,
    delta_reserved   integer NOT NULL DEFAULT 0,
    delta_in_transit integer NOT NULL DEFAULT 0,
    reference        text,
    actor            text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, movement_id)
);
CREATE INDEX stock_movements_created_at ON stock_movements USING brin (created_at);

-- Keys are random 32-byte tokens; only their SHA-256 is stored.
CREATE TABLE api_keys (
    key_id      text PRIMARY KEY,
    key_hash    bytea NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('admin', 'checkout', 'pos', 'planner')),
    location_id text REFERENCES locations (location_id),
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK ((role = 'pos') = (location_id IS NOT NULL))
);

-- The first answer to each (caller, Idempotency-Key), written in the same transaction
-- as the change it describes.
CREATE TABLE idempotency_keys (
    owner        text NOT NULL,
    idem_key     text NOT NULL,
    operation    text NOT NULL,
    request_hash bytea NOT NULL,
    status_code  integer,
    response     bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, idem_key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Outbox of stock and order events, written in the transaction that causes them.
CREATE TABLE events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL,
    sku         text,
    location_id text,
    payload     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per deployment: whether the demo network was loaded, and similar flags.
CREATE TABLE settings (
    key   text PRIMARY KEY,
    value jsonb NOT NULL
);
