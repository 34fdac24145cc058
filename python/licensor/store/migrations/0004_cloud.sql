-- Credentials and leases (the cloud backend). A credential file's secret is stored only as a hash. A seat is held
-- by an active lease until its expires_at; leases that ran out are marked expired lazily, by the next check-out
-- of their license under the license's row lock, so no background job races the check-out path.

CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    license_id TEXT NOT NULL,
    label TEXT,
    state TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
    secret_hash TEXT NOT NULL,
    reissue_of TEXT,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, license_id) REFERENCES licenses (tenant_id, id)
);
CREATE INDEX credentials_by_license ON credentials (tenant_id, license_id, state, id);

CREATE TABLE leases (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    license_id TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    device_name TEXT,
    features TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'released', 'expired', 'taken_over', 'revoked')),
    secret_hash TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    renewed_at BIGINT,
    renewals BIGINT NOT NULL,
    ended_at BIGINT,
    taken_over_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, license_id) REFERENCES licenses (tenant_id, id),
    FOREIGN KEY (tenant_id, credential_id) REFERENCES credentials (tenant_id, id)
);
CREATE INDEX leases_by_license ON leases (tenant_id, license_id, state, id);
CREATE INDEX leases_by_credential ON leases (tenant_id, credential_id, state);
CREATE INDEX leases_by_start ON leases (tenant_id, license_id, created_at);
