-- The idempotent consumer's inbox: one row per handled event identity, inserted in the
-- handler's transaction; rows older than mq.inbox.window are deleted.
-- {table} is mq.inbox.table, {name} its last part.
CREATE TABLE IF NOT EXISTS {table} (
    consumer_group TEXT        NOT NULL,
    source         TEXT        NOT NULL,
    event_id       TEXT        NOT NULL,
    processed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, source, event_id)
);
CREATE INDEX IF NOT EXISTS {name}_processed_at ON {table} (processed_at);
