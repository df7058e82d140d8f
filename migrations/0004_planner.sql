-- Planner runs: batch re-brokering (routing runs) and stock rebalancing with transfers.

-- A fulfillment a routing run replaced by a cheaper one: its hold was released and the
-- order's new fulfillments carry the units.
ALTER TABLE fulfillments DROP CONSTRAINT fulfillments_status_check;
ALTER TABLE fulfillments ADD CONSTRAINT fulfillments_status_check
    CHECK (status IN ('open', 'completed', 'rejected', 'cancelled', 'rerouted'));
CREATE INDEX orders_open ON orders (status) WHERE status IN ('queued', 'allocated', 'partially_allocated',
                                                             'backordered');

-- One row per run. At most one run of each kind is running (the partial unique index);
-- the process running it holds an advisory lock, so a row left 'running' by a process
-- that died is recognised as interrupted.
CREATE TABLE routing_runs (
    run_id       uuid PRIMARY KEY,
    status       text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    triggered_by text NOT NULL,
    phase        text NOT NULL,
    options      jsonb NOT NULL DEFAULT '{}',
    summary      jsonb,
    changes      jsonb NOT NULL DEFAULT '[]',
    error        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE UNIQUE INDEX routing_runs_one_running ON routing_runs ((true)) WHERE status = 'running';
CREATE INDEX routing_runs_recent ON routing_runs (started_at DESC);

-- Demand per position per day, as planners give it (PUT /v1/demand).
CREATE TABLE demand (
    sku            text NOT NULL REFERENCES items (sku),
    location_id    text NOT NULL REFERENCES locations (location_id),
    units_per_day  double precision NOT NULL CHECK (units_per_day >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, location_id)
);

CREATE TABLE rebalancing_runs (
    run_id       uuid PRIMARY KEY,
    status       text NOT NULL CHECK (status IN ('running', 'proposed', 'applying', 'applied', 'failed')),
    triggered_by text NOT NULL,
    phase        text NOT NULL,
    options      jsonb NOT NULL DEFAULT '{}',
    summary      jsonb,
    error        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    applied_by   text,
    applied_at   timestamptz
);
CREATE UNIQUE INDEX rebalancing_runs_one_running ON rebalancing_runs ((true))
    WHERE status IN ('running', 'applying');
CREATE INDEX rebalancing_runs_recent ON rebalancing_runs (started_at DESC);

CREATE TABLE rebalancing_proposals (
    run_id                 uuid NOT NULL REFERENCES rebalancing_runs (run_id),
    proposal_no            integer NOT NULL,
    sku                    text NOT NULL,
    from_location_id       text NOT NULL,
    to_location_id         text NOT NULL,
    quantity               integer NOT NULL CHECK (quantity > 0),
    cost                   double precision NOT NULL,
    stockout_units_avoided integer NOT NULL,
    reason                 text NOT NULL,
    status                 text NOT NULL DEFAULT 'proposed' CHECK (status IN ('proposed', 'applied', 'skipped')),
    skip_reason            text,
    transfer_id            uuid,
    PRIMARY KEY (run_id, proposal_no)
);

-- Stock on its way between locations: `transfer_out` took it from the source's on_hand
-- and added it to the destination's in_transit_in; `transfer_in` books it on arrival.
CREATE TABLE transfers (
    transfer_id      uuid PRIMARY KEY,
    run_id           uuid REFERENCES rebalancing_runs (run_id),
    sku              text NOT NULL,
    from_location_id text NOT NULL REFERENCES locations (location_id),
    to_location_id   text NOT NULL REFERENCES locations (location_id),
    quantity         integer NOT NULL CHECK (quantity > 0),
    status           text NOT NULL CHECK (status IN ('in_transit', 'received')),
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    received_by      text,
    received_at      timestamptz
);
CREATE INDEX transfers_in_transit ON transfers (to_location_id) WHERE status = 'in_transit';

-- Move `p_quantity` of `p_sku` from `p_from` into transit to `p_to`, only while the source's
-- available (on_hand - reserved - safety stock; holds past expiry still count until swept,
-- so this errs on the safe side) covers it. Returns NULL when moved, else why not. Both
-- positions are locked in location order, so two transfers never deadlock each other.
CREATE FUNCTION omniroute_transfer(p_transfer_id uuid, p_run_id uuid, p_sku text, p_from text, p_to text,
                                   p_quantity integer, p_actor text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    free integer;
BEGIN
    INSERT INTO stock_positions (sku, location_id) VALUES (p_sku, p_to) ON CONFLICT DO NOTHING;
    PERFORM 1 FROM stock_positions WHERE sku = p_sku AND location_id IN (p_from, p_to)
        ORDER BY location_id FOR UPDATE;
    SELECT p.on_hand - p.reserved - coalesce(p.safety_stock, l.safety_stock) INTO free
        FROM stock_positions p JOIN locations l ON l.location_id = p.location_id
        WHERE p.sku = p_sku AND p.location_id = p_from;
    IF free IS NULL OR free < p_quantity THEN
        RETURN format('only %s available at %s now', greatest(coalesce(free, 0), 0), p_from);
    END IF;
    UPDATE stock_positions SET on_hand = on_hand - p_quantity, updated_at = now()
        WHERE sku = p_sku AND location_id = p_from;
    UPDATE stock_positions SET in_transit_in = in_transit_in + p_quantity, updated_at = now()
        WHERE sku = p_sku AND location_id = p_to;
    INSERT INTO stock_movements (sku, location_id, kind, delta_on_hand, delta_in_transit, reference, actor)
        VALUES (p_sku, p_from, 'transfer_out', -p_quantity, 0, p_transfer_id::text, p_actor),
               (p_sku, p_to, 'transfer_out', 0, p_quantity, p_transfer_id::text, p_actor);
    INSERT INTO transfers (transfer_id, run_id, sku, from_location_id, to_location_id, quantity, status, created_by)
        VALUES (p_transfer_id, p_run_id, p_sku, p_from, p_to, p_quantity, 'in_transit', p_actor);
    RETURN NULL;
END $$;
