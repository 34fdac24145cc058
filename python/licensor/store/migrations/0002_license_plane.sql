-- The license plane: licenses assigned to subjects (a SaaS backend's user or customer id, for cloud-lite),
-- and metered usage totals per license, feature and period, counted against quotas by conditional updates.

ALTER TABLE licenses ADD COLUMN subject TEXT;
CREATE INDEX licenses_by_subject ON licenses (tenant_id, product_id, subject);

CREATE TABLE usage_totals (
    tenant_id TEXT NOT NULL,
    license_id TEXT NOT NULL,
    feature TEXT NOT NULL,
    period TEXT NOT NULL,
    subject TEXT NOT NULL,
    used BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, license_id, feature, period),
    FOREIGN KEY (tenant_id, license_id) REFERENCES licenses (tenant_id, id)
);
CREATE INDEX usage_by_subject ON usage_totals (tenant_id, subject, period);
