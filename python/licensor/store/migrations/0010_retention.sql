-- Retention (docs/retention.md): what the background pruner deletes once it is old enough is found by its age
-- through an index, so each batch reads only the rows it deletes, however large the table.

-- The remembered answers of Idempotency-Key requests, by when they were remembered.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
-- Leases by when they stopped holding a seat: ended (released, expired, taken over, revoked), or ran out unmarked.
CREATE INDEX leases_by_end ON leases ((COALESCE(ended_at, expires_at)));
-- Webhook deliveries that are finished (delivered, failed), by their last change.
CREATE INDEX webhook_deliveries_by_change ON webhook_deliveries (state, updated_at);
-- Portal sessions and single-use links, by when they expire (an expired one is never accepted again).
CREATE INDEX portal_sessions_by_expiry ON portal_sessions (expires_at);
CREATE INDEX portal_tokens_by_expiry ON portal_tokens (expires_at);
