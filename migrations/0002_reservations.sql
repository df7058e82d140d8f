-- Reservations: all-or-nothing holds on stock, with expiry.
--
-- A hold counts in stock_positions.reserved from the moment it is made until it is
-- committed, released or expired. An expired hold that the sweep has not released yet is
-- subtracted by every reader (it is still an 'active' line whose expires_at has passed), and
-- released by any reservation that touches its position before that reservation decides.

CREATE TABLE reservations (
    reservation_id uuid PRIMARY KEY,
    owner          text NOT NULL,
    reference      text,
    status         text NOT NULL CHECK (status IN ('active', 'committed', 'released', 'expired')),
    expires_at     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reservations_active_expiry ON reservations (expires_at) WHERE status = 'active';

-- The key holds `sku` (the distribution column on Citus, co-located with positions and
-- movements) but leads with the reservation: the only index that leads with `sku` is the
-- partial one over live holds below, so no reader ever walks a position's history of holds.
CREATE TABLE reservation_lines (
    reservation_id uuid NOT NULL REFERENCES reservations (reservation_id),
    sku            text NOT NULL,
    location_id    text NOT NULL,
    quantity       integer NOT NULL CHECK (quantity > 0),
    state          text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'committed', 'released', 'expired')),
    expires_at     timestamptz NOT NULL,
    PRIMARY KEY (reservation_id, sku, location_id)
);
-- Expired-but-unswept holds: found by time alone (the sweep) or by SKU and time (readers,
-- and a reservation at that SKU). Keyed (sku, expires_at) so that a hot SKU's thousands of
-- live holds are never walked: the range stops at now(). Finished lines are not indexed.
CREATE INDEX reservation_lines_active_expiry ON reservation_lines (expires_at) WHERE state = 'active';
CREATE INDEX reservation_lines_active_sku_expiry ON reservation_lines (sku, expires_at) WHERE state = 'active';

-- Release expired holds: those at the given positions (p_skus/p_locations), or any
-- (p_skus NULL), at most p_limit lines (NULL: all). Lines being released by another
-- transaction are skipped: that transaction updates the positions, and a waiting
-- conditional UPDATE re-reads them. Returns the number of lines released.
CREATE FUNCTION omniroute_release_expired(p_skus text[], p_locations text[], p_limit integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d_ids uuid[];
    d_skus text[];
    d_locations text[];
    released integer;
BEGIN
    -- Two selections, each with a predicate its index can serve.
    IF p_skus IS NULL THEN
        SELECT array_agg(reservation_id), array_agg(sku), array_agg(location_id)
        INTO d_ids, d_skus, d_locations
        FROM (SELECT rl.reservation_id, rl.sku, rl.location_id FROM reservation_lines rl
              WHERE rl.state = 'active' AND rl.expires_at <= now()
              ORDER BY rl.expires_at LIMIT p_limit
              FOR UPDATE SKIP LOCKED) doomed;
    ELSE
        SELECT array_agg(reservation_id), array_agg(sku), array_agg(location_id)
        INTO d_ids, d_skus, d_locations
        FROM (SELECT rl.reservation_id, rl.sku, rl.location_id FROM reservation_lines rl
              WHERE rl.sku = ANY(p_skus) AND rl.state = 'active' AND rl.expires_at <= now()
                AND (rl.sku, rl.location_id) IN (SELECT * FROM unnest(p_skus, p_locations))
              LIMIT p_limit
              FOR UPDATE SKIP LOCKED) doomed;
    END IF;
    IF d_ids IS NULL THEN
        RETURN 0;
    END IF;

    WITH lines AS (
        UPDATE reservation_lines rl SET state = 'expired'
        FROM unnest(d_ids, d_skus, d_locations) AS d(reservation_id, sku, location_id)
        WHERE rl.reservation_id = d.reservation_id AND rl.sku = d.sku AND rl.location_id = d.location_id
        RETURNING rl.sku, rl.location_id, rl.reservation_id, rl.quantity
    ),
    per_position AS (
        SELECT sku, location_id, sum(quantity)::integer AS quantity FROM lines GROUP BY sku, location_id
    ),
    positions AS (
        UPDATE stock_positions p SET reserved = p.reserved - pp.quantity, updated_at = now()
        FROM per_position pp
        WHERE p.sku = pp.sku AND p.location_id = pp.location_id
    ),
    ledger AS (
        INSERT INTO stock_movements (sku, location_id, kind, delta_reserved, reference, actor)
        SELECT sku, location_id, 'release', -quantity, reservation_id::text, 'expiry' FROM lines
    ),
    headers AS (
        UPDATE reservations r SET status = 'expired', updated_at = now()
        WHERE r.reservation_id IN (SELECT reservation_id FROM lines) AND r.status = 'active'
    )
    SELECT count(*) INTO released FROM lines;
    RETURN released;
END $$;

-- Make a reservation, all lines or none, in one statement. Each line is one conditional
-- UPDATE that succeeds only while `available` covers it, taken in (sku, location_id)
-- order so that two carts never deadlock. If any line falls short, raises SQLSTATE OM001
-- with the shortages as JSON in DETAIL, which undoes every line already taken.
-- Expiry is judged by the database clock: returns (created_at, expires_at).
CREATE FUNCTION omniroute_reserve(
    p_id uuid, p_owner text, p_reference text, p_ttl_seconds integer,
    p_skus text[], p_locations text[], p_quantities integer[],
    OUT created_at timestamptz, OUT expires_at timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    line record;
    shortages jsonb := '[]';
    avail integer;
BEGIN
    created_at := now();
    expires_at := created_at + make_interval(secs => p_ttl_seconds);
    IF EXISTS (
        SELECT 1 FROM reservation_lines rl
        WHERE rl.sku = ANY(p_skus) AND rl.state = 'active' AND rl.expires_at <= now()
          AND (rl.sku, rl.location_id) IN (SELECT * FROM unnest(p_skus, p_locations))
    ) THEN
        PERFORM omniroute_release_expired(p_skus, p_locations, NULL);
    END IF;

    FOR line IN
        SELECT * FROM unnest(p_skus, p_locations, p_quantities) AS t(sku, location_id, quantity) ORDER BY 1, 2
    LOOP
        UPDATE stock_positions p SET reserved = p.reserved + line.quantity, updated_at = now()
        FROM locations l
        WHERE p.sku = line.sku AND p.location_id = line.location_id
          AND l.location_id = p.location_id AND l.active
          AND p.on_hand - p.reserved - coalesce(p.safety_stock, l.safety_stock) >= line.quantity;
        IF NOT FOUND THEN
            SELECT CASE WHEN l.active
                        THEN greatest(0, p.on_hand - p.reserved - coalesce(p.safety_stock, l.safety_stock))
                        ELSE 0 END
            INTO avail
            FROM stock_positions p JOIN locations l ON l.location_id = p.location_id
            WHERE p.sku = line.sku AND p.location_id = line.location_id;
            shortages := shortages || jsonb_build_object(
                'sku', line.sku, 'location_id', line.location_id,
                'requested', line.quantity, 'available', coalesce(avail, 0),
                'unknown_sku', NOT EXISTS (SELECT 1 FROM items i WHERE i.sku = line.sku),
                'unknown_location', NOT EXISTS (SELECT 1 FROM locations l WHERE l.location_id = line.location_id));
        END IF;
    END LOOP;

    IF jsonb_array_length(shortages) > 0 THEN
        RAISE EXCEPTION 'insufficient stock' USING ERRCODE = 'OM001', DETAIL = shortages::text;
    END IF;

    INSERT INTO reservations (reservation_id, owner, reference, status, expires_at)
    VALUES (p_id, p_owner, p_reference, 'active', expires_at);
    INSERT INTO reservation_lines (sku, location_id, reservation_id, quantity, expires_at)
    SELECT t.sku, t.location_id, p_id, t.quantity, omniroute_reserve.expires_at
    FROM unnest(p_skus, p_locations, p_quantities) AS t(sku, location_id, quantity);
    INSERT INTO stock_movements (sku, location_id, kind, delta_reserved, reference, actor)
    SELECT sku, location_id, 'reserve', quantity, p_id::text, p_owner
    FROM unnest(p_skus, p_locations, p_quantities) AS t(sku, location_id, quantity);
END $$;

-- Group commit: many reservations in one statement and one commit. Each keeps its own
-- all-or-nothing outcome in a subtransaction: a shortage undoes only that reservation.
-- Lines are concatenated; p_line_counts[i] says how many belong to reservation i.
-- Returns one row per reservation: times when held, the shortages when not.
CREATE FUNCTION omniroute_reserve_batch(
    p_ids uuid[], p_owners text[], p_references text[], p_ttls integer[], p_line_counts integer[],
    p_skus text[], p_locations text[], p_quantities integer[]
) RETURNS TABLE (idx integer, created_at timestamptz, expires_at timestamptz, shortages jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    first integer := 1;
    last integer;
    held record;
    detail text;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        idx := i;
        last := first + p_line_counts[i] - 1;
        BEGIN
            SELECT * INTO held FROM omniroute_reserve(
                p_ids[i], p_owners[i], p_references[i], p_ttls[i],
                p_skus[first:last], p_locations[first:last], p_quantities[first:last]);
            created_at := held.created_at;
            expires_at := held.expires_at;
            shortages := NULL;
        EXCEPTION WHEN SQLSTATE 'OM001' THEN
            GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
            created_at := NULL;
            expires_at := NULL;
            shortages := detail::jsonb;
        END;
        RETURN NEXT;
        first := last + 1;
    END LOOP;
END $$;
