-- Order intake (POST /v1/orders/{source}): the shops a tenant takes orders from, which of their items (SKUs,
-- price ids, product codes) become licenses of which policy, and every business event received, once.

CREATE TABLE order_sources (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    secrets TEXT NOT NULL,  -- the shop's signing secrets, sealed with the master key (never shown)
    effects TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id)
);

CREATE TABLE order_mappings (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    item TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, source_id, item),
    FOREIGN KEY (tenant_id, source_id) REFERENCES order_sources (tenant_id, id),
    FOREIGN KEY (tenant_id, policy_id) REFERENCES policies (tenant_id, id)
);

-- One row per business event (a purchase, one subscription period's renewal, a cancellation...), whatever the
-- number of deliveries and provider event ids it came with: the unique key is what makes it happen once.
CREATE TABLE order_events (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    business_key TEXT NOT NULL,
    type TEXT NOT NULL,
    provider_event_id TEXT NOT NULL,
    provider_type TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT,
    license_ids TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, source_id, business_key),
    FOREIGN KEY (tenant_id, source_id) REFERENCES order_sources (tenant_id, id)
);

-- The shop's ids (order, subscription, invoice, payment) that name a license, so later events find it. An
-- empty license_id marks an order seen that licensed nothing (no item mapped): its later events are not waited for.
CREATE TABLE order_links (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    reference TEXT NOT NULL,
    license_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, source_id, reference, license_id),
    FOREIGN KEY (tenant_id, source_id) REFERENCES order_sources (tenant_id, id)
);

-- The shop's time of the newest order event applied to each aspect of a license (term, state, plan): an older
-- event arriving late is recorded and ignored.
ALTER TABLE licenses ADD COLUMN order_marks TEXT NOT NULL DEFAULT '{}';
