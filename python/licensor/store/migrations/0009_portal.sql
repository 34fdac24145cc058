-- The License Portal: customers' passwords (argon2id), sign-in sessions, single-use links (password reset, sign-in
-- by e-mail) and each tenant's branding. Secrets are stored only as hashes.

ALTER TABLE customers ADD COLUMN password_hash TEXT;

CREATE TABLE portal_sessions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    secret_hash {blob} NOT NULL,
    customer_id TEXT,           -- signed in as a customer: all their licenses
    license_id TEXT,            -- signed in with a license key: that license
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id)
);

CREATE TABLE portal_tokens (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    customer_id TEXT NOT NULL,
    purpose TEXT NOT NULL CHECK (purpose IN ('password', 'sign_in')),
    secret_hash {blob} NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)
);

CREATE TABLE portal_brandings (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    logo_url TEXT,
    primary_color TEXT NOT NULL,
    accent_color TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id)
);
