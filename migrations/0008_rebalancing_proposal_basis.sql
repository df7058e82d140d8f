-- Rebalancing proposals keep the numbers each proposal rests on instead of its sentence.
-- A full-network run writes millions of proposals; their sentences were about 1 GB of
-- repeated text. The API words the numbers (engine.core.rebalance.explain); rows written
-- before this migration keep their stored `reason`.
--
-- The foreign key to rebalancing_runs goes: PostgreSQL checks it row by row, which made
-- writing a run's proposals 2.5 times slower. Proposals are written only by their run,
-- in the transaction that finishes it, and runs are never deleted.
ALTER TABLE rebalancing_proposals
    DROP CONSTRAINT rebalancing_proposals_run_id_fkey,
    ALTER COLUMN reason DROP NOT NULL,
    ADD COLUMN source_available  integer,
    ADD COLUMN source_in_transit integer,
    ADD COLUMN source_target     integer,
    ADD COLUMN source_surplus    integer,
    ADD COLUMN dest_available    integer,
    ADD COLUMN dest_in_transit   integer,
    ADD COLUMN dest_target       integer,
    ADD COLUMN dest_shortfall    integer,
    ADD CONSTRAINT rebalancing_proposals_explained CHECK (reason IS NOT NULL OR dest_shortfall IS NOT NULL);
