-- The served-card log and feedback, as the embedded SQLite store has always had them (CREATE ...
-- IF NOT EXISTS: a database made before migrations were versioned is taken over as version 1).
-- {{id}} and {{timestamp}} are the two column types the dialects spell differently (migrations.py).
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS served_card (
    card_uuid TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    hook TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    patient_hash TEXT NOT NULL,
    served_at {{timestamp}} NOT NULL
);

CREATE TABLE IF NOT EXISTS feedback (
    id {{id}},
    dedup_key TEXT NOT NULL UNIQUE,
    service_id TEXT NOT NULL,
    card_uuid TEXT NOT NULL,
    outcome TEXT NOT NULL,
    accepted_suggestions TEXT,
    override_system TEXT,
    override_code TEXT,
    override_display TEXT,
    user_comment TEXT,
    outcome_timestamp {{timestamp}} NOT NULL,
    received_at {{timestamp}} NOT NULL,
    body TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS feedback_card ON feedback (card_uuid);
