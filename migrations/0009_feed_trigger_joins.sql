-- The change feed's statement triggers join a statement's old and new rows (transition
-- tables). PL/pgSQL keeps the plan of that join for the session: planned for the one-row
-- statements a connection mostly runs, it is a nested loop, and a later statement over
-- 30,000 positions on that connection spent minutes in its trigger (quadratic). Hash or
-- merge joins only: as cheap for one row, linear for many.
ALTER FUNCTION omniroute_position_update_events() SET enable_nestloop = off;
ALTER FUNCTION omniroute_reservation_events() SET enable_nestloop = off;
