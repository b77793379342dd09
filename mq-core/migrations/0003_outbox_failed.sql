-- Rows set aside (failed_at): counted for the metric and health, and with
-- mq.outbox.strict-key-order looked up per key (a key's later rows wait behind them).
-- {table} is mq.outbox.table, {name} its last part.
CREATE INDEX IF NOT EXISTS {name}_failed ON {table} (key_hash, msg_key, id) WHERE failed_at IS NOT NULL;
