-- Served-card rows are deleted once older than CDS_SERVED_CARD_RETENTION_DAYS, oldest first and
-- in small batches: the purge reads them by age.
CREATE INDEX IF NOT EXISTS served_card_served_at ON served_card (served_at);
