-- The transactional outbox: rows written in the application's transaction, published by
-- the relay in id order per key, then marked sent (and deleted after mq.outbox.retention).
-- {table} is mq.outbox.table, {name} its last part.
CREATE TABLE IF NOT EXISTS {table} (
    id          BIGSERIAL PRIMARY KEY,
    destination TEXT        NOT NULL,
    msg_key     BYTEA       NOT NULL,
    -- Which relay slot the row belongs to (a stable hash of the key; slot = key_hash % slots).
    key_hash    INTEGER     NOT NULL,
    -- The CloudEvent, structured JSON: the relay publishes exactly this (same id every time).
    event       TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    sent_at     TIMESTAMPTZ,
    -- Set when the broker refuses the row as a record (too large, invalid) or its event does
    -- not parse: it is left out from then on, kept for an operator (never deleted by mq).
    failed_at   TIMESTAMPTZ,
    attempts    INTEGER     NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS {name}_pending ON {table} (id) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS {name}_sent ON {table} (sent_at) WHERE sent_at IS NOT NULL;
