-- Orders and their fulfillments. Each open fulfillment is backed by a reservation that
-- holds its units at its source location.

CREATE TABLE orders (
    order_id           text PRIMARY KEY CHECK (order_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$'),
    owner              text NOT NULL,
    channel            text,
    method             text NOT NULL CHECK (method IN ('ship', 'pickup', 'curbside')),
    request            jsonb NOT NULL,
    request_hash       bytea NOT NULL,
    status             text NOT NULL CHECK (status IN ('allocated', 'partially_allocated', 'backordered', 'queued',
                                                       'cancelled', 'completed')),
    excluded_locations text[] NOT NULL DEFAULT '{}',
    unallocated        jsonb NOT NULL DEFAULT '[]',
    total_cost         double precision NOT NULL DEFAULT 0,
    explanation        jsonb NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fulfillments (
    fulfillment_id uuid PRIMARY KEY,
    order_id       text NOT NULL REFERENCES orders (order_id),
    location_id    text NOT NULL REFERENCES locations (location_id),
    method         text NOT NULL CHECK (method IN ('ship_from_warehouse', 'ship_from_store', 'pickup', 'curbside',
                                                   'transfer_then_pickup')),
    lines          jsonb NOT NULL,
    cost           jsonb NOT NULL,
    eta            date NOT NULL,
    reservation_id uuid REFERENCES reservations (reservation_id),
    status         text NOT NULL CHECK (status IN ('open', 'completed', 'rejected', 'cancelled')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fulfillments_by_order ON fulfillments (order_id);
-- Daily capacity: orders allocated to a location today.
CREATE INDEX fulfillments_by_location_day ON fulfillments (location_id, created_at) WHERE status <> 'cancelled';
