-- The event chain without a per-tenant lock on the writer's path (docs/architecture.md#the-event-chain): a
-- transaction that finds its tenant's chain head taken queues its events here instead of waiting, and a
-- chainer links them into `events` after the commit, in batches. `pos` orders the queue: a transaction's events
-- in the order appended, and a transaction begun after another committed after it.
CREATE TABLE event_queue (
    pos {serial_key},
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX event_queue_by_tenant ON event_queue (tenant_id, pos);
