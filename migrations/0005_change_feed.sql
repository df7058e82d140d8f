-- The change feed (GET /v1/events).
--
-- Writers append to the `events` outbox in their own transaction: triggers below write one
-- `stock` event per position whose `available` changed, and one event per reservation,
-- order and fulfillment status change. `event_id` is assigned at insert, but transactions
-- commit in another order, so a reader paging by event_id could pass an id whose
-- transaction commits later. Readers therefore never see event_id: one publisher (a single
-- process, elected with an advisory lock) repeatedly gives the committed events that have
-- none a `seq` from `event_seq`, in one short transaction. Publishing is serial, so an event
-- that becomes visible later always gets a larger seq, and `seq > after` misses nothing.

ALTER TABLE events
    ADD COLUMN seq bigint,
    ADD COLUMN published_at timestamptz;
-- When the change was written (close to its commit), not when its transaction began.
ALTER TABLE events ALTER COLUMN created_at SET DEFAULT clock_timestamp();

-- Not owned by the column: TRUNCATE ... RESTART IDENTITY must never restart it.
CREATE SEQUENCE event_seq;

-- Events written before the feed existed are published in their id order.
UPDATE events e SET seq = s.seq, published_at = now()
FROM (SELECT event_id, nextval('event_seq') AS seq FROM (SELECT event_id FROM events ORDER BY event_id) o) s
WHERE e.event_id = s.event_id;

CREATE UNIQUE INDEX events_seq ON events (seq) WHERE seq IS NOT NULL;
CREATE INDEX events_unpublished ON events (event_id) WHERE seq IS NULL;

-- One row: the highest seq published and the highest seq purged. Readers take both in the
-- snapshot of their page, so a page never reaches past what is published, and a cursor
-- older than what is retained is answered with "resync" instead of a silent gap.
CREATE TABLE event_feed (
    id                boolean PRIMARY KEY DEFAULT true CHECK (id),
    published_through bigint NOT NULL,
    purged_through    bigint NOT NULL DEFAULT 0
);
INSERT INTO event_feed (published_through) SELECT coalesce(max(seq), 0) FROM events;

-- Stock: one event per position whose `available` (max(0, on_hand - reserved - safety
-- stock)) changed, with the row's numbers after the change and what moved. Statement-level
-- with transition tables: a set-based statement (the expiry sweep, a commit of many lines)
-- writes all its events in one INSERT.
CREATE FUNCTION omniroute_position_update_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (kind, sku, location_id, payload)
    SELECT 'stock', n.sku, n.location_id,
           jsonb_build_object('on_hand', n.on_hand, 'reserved', n.reserved, 'safety_stock', c.safety_stock,
                              'in_transit_in', n.in_transit_in, 'available', c.available,
                              'delta_on_hand', n.on_hand - o.on_hand, 'delta_reserved', n.reserved - o.reserved)
    FROM new_positions n
    JOIN old_positions o ON o.sku = n.sku AND o.location_id = n.location_id
    JOIN locations l ON l.location_id = n.location_id
    CROSS JOIN LATERAL (
        SELECT coalesce(n.safety_stock, l.safety_stock) AS safety_stock,
               greatest(0, n.on_hand - n.reserved - coalesce(n.safety_stock, l.safety_stock)) AS available,
               greatest(0, o.on_hand - o.reserved - coalesce(o.safety_stock, l.safety_stock)) AS was
    ) c
    WHERE c.available <> c.was
    ORDER BY n.sku, n.location_id;
    RETURN NULL;
END $$;

CREATE FUNCTION omniroute_position_insert_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (kind, sku, location_id, payload)
    SELECT 'stock', n.sku, n.location_id,
           jsonb_build_object('on_hand', n.on_hand, 'reserved', n.reserved, 'safety_stock', c.safety_stock,
                              'in_transit_in', n.in_transit_in, 'available', c.available,
                              'delta_on_hand', n.on_hand, 'delta_reserved', n.reserved)
    FROM new_positions n
    JOIN locations l ON l.location_id = n.location_id
    CROSS JOIN LATERAL (
        SELECT coalesce(n.safety_stock, l.safety_stock) AS safety_stock,
               greatest(0, n.on_hand - n.reserved - coalesce(n.safety_stock, l.safety_stock)) AS available
    ) c
    WHERE c.available > 0
    ORDER BY n.sku, n.location_id;
    RETURN NULL;
END $$;

CREATE TRIGGER stock_positions_update_events AFTER UPDATE ON stock_positions
    REFERENCING OLD TABLE AS old_positions NEW TABLE AS new_positions
    FOR EACH STATEMENT EXECUTE FUNCTION omniroute_position_update_events();
-- Positions are created empty (available 0, no event) except by a bulk load, which disables
-- this trigger for its COPY and writes one `reload` event instead (engine/store/bulk.py).
CREATE TRIGGER stock_positions_insert_events AFTER INSERT ON stock_positions
    REFERENCING NEW TABLE AS new_positions
    FOR EACH STATEMENT EXECUTE FUNCTION omniroute_position_insert_events();

-- A location's default safety stock moves `available` at each of its positions that has no
-- safety stock of its own. Rare (an admin edit), and it reads every position row: there is
-- no index by location alone.
CREATE FUNCTION omniroute_location_safety_stock_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (kind, sku, location_id, payload)
    SELECT 'stock', p.sku, p.location_id,
           jsonb_build_object('on_hand', p.on_hand, 'reserved', p.reserved, 'safety_stock', NEW.safety_stock,
                              'in_transit_in', p.in_transit_in,
                              'available', greatest(0, p.on_hand - p.reserved - NEW.safety_stock),
                              'delta_on_hand', 0, 'delta_reserved', 0)
    FROM stock_positions p
    WHERE p.location_id = NEW.location_id AND p.safety_stock IS NULL
      AND greatest(0, p.on_hand - p.reserved - NEW.safety_stock) <> greatest(0, p.on_hand - p.reserved - OLD.safety_stock)
    ORDER BY p.sku;
    RETURN NULL;
END $$;

CREATE TRIGGER locations_safety_stock_events AFTER UPDATE OF safety_stock ON locations
    FOR EACH ROW WHEN (OLD.safety_stock <> NEW.safety_stock)
    EXECUTE FUNCTION omniroute_location_safety_stock_events();

-- Status changes: one event when a reservation, order or fulfillment is created and one
-- each time its status changes (`previous_status` says from what).
CREATE FUNCTION omniroute_reservation_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO events (kind, payload)
        SELECT 'reservation', jsonb_build_object('reservation_id', n.reservation_id, 'status', n.status,
                                                 'previous_status', NULL, 'reference', n.reference,
                                                 'expires_at', n.expires_at)
        FROM new_rows n ORDER BY n.reservation_id;
    ELSE
        INSERT INTO events (kind, payload)
        SELECT 'reservation', jsonb_build_object('reservation_id', n.reservation_id, 'status', n.status,
                                                 'previous_status', o.status, 'reference', n.reference,
                                                 'expires_at', n.expires_at)
        FROM new_rows n JOIN old_rows o ON o.reservation_id = n.reservation_id
        WHERE n.status <> o.status
        ORDER BY n.reservation_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER reservations_insert_events AFTER INSERT ON reservations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION omniroute_reservation_events();
CREATE TRIGGER reservations_update_events AFTER UPDATE ON reservations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION omniroute_reservation_events();

CREATE FUNCTION omniroute_order_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (kind, payload)
    VALUES ('order', jsonb_build_object('order_id', NEW.order_id, 'status', NEW.status,
                                        'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
                                        'method', NEW.method, 'channel', NEW.channel));
    RETURN NULL;
END $$;

CREATE TRIGGER orders_insert_events AFTER INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION omniroute_order_events();
CREATE TRIGGER orders_status_events AFTER UPDATE OF status ON orders
    FOR EACH ROW WHEN (OLD.status <> NEW.status) EXECUTE FUNCTION omniroute_order_events();

CREATE FUNCTION omniroute_fulfillment_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (kind, location_id, payload)
    VALUES ('fulfillment', NEW.location_id,
            jsonb_build_object('order_id', NEW.order_id, 'fulfillment_id', NEW.fulfillment_id, 'status', NEW.status,
                               'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
                               'method', NEW.method, 'reservation_id', NEW.reservation_id));
    RETURN NULL;
END $$;

CREATE TRIGGER fulfillments_insert_events AFTER INSERT ON fulfillments
    FOR EACH ROW EXECUTE FUNCTION omniroute_fulfillment_events();
CREATE TRIGGER fulfillments_status_events AFTER UPDATE OF status ON fulfillments
    FOR EACH ROW WHEN (OLD.status <> NEW.status) EXECUTE FUNCTION omniroute_fulfillment_events();
