-- Releases the vendor can withdraw (yanked: never offered again, kept for the record) and the files of a release
-- (artifacts: name, URL, size and SHA-256 of each), which the signed release manifest carries to the device.

ALTER TABLE releases ADD COLUMN yanked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE releases ADD COLUMN artifacts TEXT NOT NULL DEFAULT '[]';
CREATE INDEX releases_by_product ON releases (tenant_id, product_id, channel);
