-- Snoozes (issue 13): what a served card was about, and the suppressions an override records.
-- subject: the drug ingredient the card was about ('' for a chart review); indicator: as served.
ALTER TABLE served_card ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE served_card ADD COLUMN indicator TEXT NOT NULL DEFAULT '';
-- The labels of the card's suggestions by suggestion uuid (JSON), so the governance report can say
-- which suggestions were taken.
ALTER TABLE served_card ADD COLUMN suggestion_labels TEXT NOT NULL DEFAULT '{}';

-- One row per override that snoozes a card (the card's uuid is its key: feedback sent twice
-- records one snooze). The patient is hashed as in served_card; ended_at is set when a snooze is
-- ended early (calciphylaxis-cds snooze-end).
CREATE TABLE IF NOT EXISTS snooze (
    card_uuid TEXT PRIMARY KEY,
    patient_hash TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    indicator TEXT NOT NULL,
    reason_code TEXT NOT NULL,
    reason_display TEXT NOT NULL,
    created_at {{timestamp}} NOT NULL,
    until_at {{timestamp}} NOT NULL,
    ended_at {{timestamp}}
);

CREATE INDEX IF NOT EXISTS snooze_patient ON snooze (patient_hash, until_at);
