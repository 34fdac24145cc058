-- License Central: tenants, their keys and tokens, the catalog, policies, customers, licenses, the event
-- log and idempotency records. Portable SQL for SQLite and PostgreSQL: {blob} is BLOB or BYTEA; times are
-- microseconds since the epoch (BIGINT); booleans are 0/1 INTEGERs; JSON is canonical TEXT.
-- Every row carries tenant_id, and references include it, so no row can point into another tenant.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    kid TEXT NOT NULL,
    public_key {blob} NOT NULL,
    sealed_seed {blob} NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'retired')),
    created_at BIGINT NOT NULL,
    retired_at BIGINT,
    PRIMARY KEY (tenant_id, kid)
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    product_id TEXT,
    secret_hash {blob} NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    UNIQUE (tenant_id, id)
);

CREATE TABLE products (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, code)
);

CREATE TABLE features (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    metered INTEGER NOT NULL,
    unit TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, product_id, code),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);

CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    version TEXT NOT NULL,
    channel TEXT NOT NULL,
    released_at BIGINT NOT NULL,
    required_features TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, product_id, channel, version),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);

CREATE TABLE policies (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    name TEXT NOT NULL,
    backend TEXT NOT NULL,
    seats INTEGER NOT NULL,
    duration TEXT NOT NULL,
    maintenance_days INTEGER,
    features TEXT NOT NULL,
    options TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);

CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    external_ref TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, email)
);

CREATE TABLE licenses (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    customer_id TEXT,
    key_hash {blob} NOT NULL,
    key_hint TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'revoked')),
    starts_at BIGINT NOT NULL,
    expires_at BIGINT,
    maintenance_until BIGINT,
    overrides TEXT NOT NULL,
    order_ref TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, key_hash),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id),
    FOREIGN KEY (tenant_id, policy_id) REFERENCES policies (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)
);
CREATE INDEX licenses_by_product ON licenses (tenant_id, product_id, id);
CREATE INDEX licenses_by_customer ON licenses (tenant_id, customer_id, id);

CREATE TABLE event_chain (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
    last_seq BIGINT NOT NULL,
    last_hash {blob} NOT NULL
);

CREATE TABLE events (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    seq BIGINT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    prev_hash {blob} NOT NULL,
    hash {blob} NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX events_by_subject ON events (tenant_id, subject_id, seq);

CREATE TABLE idempotency_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    key TEXT NOT NULL,
    request_hash {blob} NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
