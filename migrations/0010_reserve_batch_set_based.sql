-- Group commit, set-based. The first version ran omniroute_reserve once per reservation in
-- a subtransaction: per reservation a savepoint, one UPDATE per line (each firing the
-- change feed's trigger) and three INSERTs (one firing the reservation trigger). Now a
-- group costs the same few statements whatever its size:
--
--   1. expired holds at the group's positions are released (as omniroute_reserve does);
--   2. the group's positions are locked in (sku, location_id) order, the order every writer
--      uses, and their `available` read once;
--   3. reservations are decided in arrival order against those numbers, each all or
--      nothing: a held one takes its units before the next is judged, exactly as when they
--      ran one by one;
--   4. one UPDATE adds each position's held units (a hot position gets one new row version
--      per group, not one per reservation), then one INSERT each for the headers, the lines
--      and the ledger.
--
-- The rows stay locked from step 2 to the commit, so nothing else moves `available` in
-- between: no oversell. Shortages report `available` as the reservation saw it.
CREATE OR REPLACE FUNCTION omniroute_reserve_batch(
    p_ids uuid[], p_owners text[], p_references text[], p_ttls integer[], p_line_counts integer[],
    p_skus text[], p_locations text[], p_quantities integer[]
) RETURNS TABLE (idx integer, created_at timestamptz, expires_at timestamptz, shortages jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n_items integer := coalesce(array_length(p_ids, 1), 0);
    line_item integer[];  -- per line: its reservation
    line_pos integer[];   -- per line: its position's index into avail, 0 when there is none
    avail integer[];      -- per position, in lock order: available (NULL: location inactive)
    took boolean[];       -- per line: its units were taken from avail
    held boolean[] := array_fill(false, ARRAY[n_items]);
    short jsonb[] := array_fill(NULL::jsonb, ARRAY[n_items]);
    missing jsonb;
    first integer := 1;
    last integer;
    k integer;
BEGIN
    IF n_items = 0 THEN
        RETURN;
    END IF;
    SELECT array_agg(t.i ORDER BY t.i, g.n) INTO line_item
    FROM unnest(p_line_counts) WITH ORDINALITY AS t(c, i), generate_series(1, t.c) AS g(n);
    took := array_fill(false, ARRAY[coalesce(array_length(p_skus, 1), 0)]);

    IF EXISTS (
        SELECT 1 FROM reservation_lines rl
        WHERE rl.sku = ANY(p_skus) AND rl.state = 'active' AND rl.expires_at <= now()
          AND (rl.sku, rl.location_id) IN (SELECT * FROM unnest(p_skus, p_locations))
    ) THEN
        PERFORM omniroute_release_expired(p_skus, p_locations, NULL);
    END IF;

    -- Locked in (sku, location_id) order; a row another writer changed meanwhile is read as
    -- that writer committed it (and as it stays until this commit).
    WITH pos AS (
        SELECT row_number() OVER (ORDER BY locked.sku, locked.location_id)::integer AS k, locked.*
        FROM (
            SELECT p.sku, p.location_id,
                   CASE WHEN l.active
                        THEN p.on_hand - p.reserved - coalesce(p.safety_stock, l.safety_stock) END AS available
            FROM stock_positions p JOIN locations l ON l.location_id = p.location_id
            WHERE p.sku = ANY(p_skus) AND (p.sku, p.location_id) IN (SELECT * FROM unnest(p_skus, p_locations))
            ORDER BY p.sku, p.location_id
            FOR UPDATE OF p
        ) locked
    )
    SELECT (SELECT array_agg(pos.available ORDER BY pos.k) FROM pos),
           (SELECT array_agg(coalesce(pos.k, 0) ORDER BY t.j)
            FROM unnest(p_skus, p_locations) WITH ORDINALITY AS t(sku, location_id, j)
            LEFT JOIN pos ON pos.sku = t.sku AND pos.location_id = t.location_id)
    INTO avail, line_pos;

    FOR i IN 1 .. n_items LOOP
        last := first + p_line_counts[i] - 1;
        missing := '[]';
        FOR j IN first .. last LOOP
            k := line_pos[j];
            IF k > 0 AND avail[k] >= p_quantities[j] THEN
                avail[k] := avail[k] - p_quantities[j];
                took[j] := true;
            ELSE
                missing := missing || jsonb_build_object(
                    'sku', p_skus[j], 'location_id', p_locations[j],
                    'requested', p_quantities[j],
                    'available', CASE WHEN k > 0 THEN greatest(0, coalesce(avail[k], 0)) ELSE 0 END,
                    'unknown_sku', NOT EXISTS (SELECT 1 FROM items it WHERE it.sku = p_skus[j]),
                    'unknown_location', NOT EXISTS (SELECT 1 FROM locations lo WHERE lo.location_id = p_locations[j]));
            END IF;
        END LOOP;
        IF jsonb_array_length(missing) = 0 THEN
            held[i] := true;
        ELSE
            short[i] := missing;
            FOR j IN first .. last LOOP  -- all or nothing: give back what it took
                IF took[j] THEN
                    avail[line_pos[j]] := avail[line_pos[j]] + p_quantities[j];
                    took[j] := false;
                END IF;
            END LOOP;
        END IF;
        first := last + 1;
    END LOOP;

    IF true = ANY(held) THEN
        UPDATE stock_positions p SET reserved = p.reserved + t.quantity, updated_at = now()
        FROM (SELECT s.sku, s.location_id, sum(s.quantity)::integer AS quantity
              FROM unnest(p_skus, p_locations, p_quantities, took) AS s(sku, location_id, quantity, took)
              WHERE s.took
              GROUP BY s.sku, s.location_id) t
        WHERE p.sku = t.sku AND p.location_id = t.location_id;

        INSERT INTO reservations (reservation_id, owner, reference, status, expires_at)
        SELECT r.id, r.owner, r.reference, 'active', now() + make_interval(secs => r.ttl)
        FROM unnest(p_ids, p_owners, p_references, p_ttls, held) WITH ORDINALITY AS r(id, owner, reference, ttl, held, i)
        WHERE r.held
        ORDER BY r.i;

        INSERT INTO reservation_lines (sku, location_id, reservation_id, quantity, expires_at)
        SELECT s.sku, s.location_id, p_ids[s.item], s.quantity, now() + make_interval(secs => p_ttls[s.item])
        FROM unnest(p_skus, p_locations, p_quantities, line_item, took) WITH ORDINALITY
             AS s(sku, location_id, quantity, item, took, j)
        WHERE s.took
        ORDER BY s.j;

        INSERT INTO stock_movements (sku, location_id, kind, delta_reserved, reference, actor)
        SELECT s.sku, s.location_id, 'reserve', s.quantity, p_ids[s.item]::text, p_owners[s.item]
        FROM unnest(p_skus, p_locations, p_quantities, line_item, took) WITH ORDINALITY
             AS s(sku, location_id, quantity, item, took, j)
        WHERE s.took
        ORDER BY s.j;
    END IF;

    RETURN QUERY
    SELECT i, CASE WHEN held[i] THEN now() END, CASE WHEN held[i] THEN now() + make_interval(secs => p_ttls[i]) END,
           short[i]
    FROM generate_series(1, n_items) AS i;
END $$;
