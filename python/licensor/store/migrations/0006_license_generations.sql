-- A license's generation counts the changes made to it in License Central (its row, or its policy's): a
-- connected device is pushed an update when it rises (GET /v1/updates), and refuses one older than it holds.

ALTER TABLE licenses ADD COLUMN generation BIGINT NOT NULL DEFAULT 1;
