-- Activations (the activation backend): devices bound to licenses by fingerprint and device key. A seat is held
-- by an active or suspended activation, and by a withdrawn one (removed by the vendor) until its last license
-- file lapses; a replaced one (moved by a recovery) and a deactivated one hold none. Seats are counted under the
-- license's row lock, so concurrent activations never exceed them.

CREATE TABLE activations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    license_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'withdrawn', 'replaced', 'deactivated')),
    device_key TEXT NOT NULL,
    device_name TEXT,
    fingerprint TEXT NOT NULL,
    generation BIGINT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('online', 'offline')),
    checkpoint_at BIGINT NOT NULL,
    lapses_at BIGINT NOT NULL,
    last_checkin_at BIGINT,
    last_request_digest TEXT,
    recovery_of TEXT,
    flagged TEXT CHECK (flagged IN ('clone', 'rollback')),
    ended_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, license_id) REFERENCES licenses (tenant_id, id)
);
CREATE INDEX activations_by_license ON activations (tenant_id, license_id, state, id);
