-- Issue 20: snoozes and feedback scoped to the caller, caller text no longer stored, bounds.
--
-- scope: whom a card was served to and who sent feedback: 'unauthenticated' with authentication
-- off, else 'jwt:' and a SHA-256 of the verified JWT's issuer and tenant (feedback/scope.py).
-- Rows written before this migration keep '': no hook call reads a snooze of that scope, and no
-- override is verified against a served card of that scope.
ALTER TABLE served_card ADD COLUMN scope TEXT NOT NULL DEFAULT '';
ALTER TABLE feedback ADD COLUMN scope TEXT NOT NULL DEFAULT '';
ALTER TABLE snooze ADD COLUMN scope TEXT NOT NULL DEFAULT '';

-- What became of an override's coded reason: 'recorded' (a reason the served card offered, in the
-- service's own code system: override_code holds it), 'not-offered' (stored without it),
-- 'card-unknown' (the card is not in the sender's served-card log: stored without it), '' (no
-- coded reason, or a row from before this migration).
ALTER TABLE feedback ADD COLUMN reason_check TEXT NOT NULL DEFAULT '';
-- 1 when the card was in the sender's served-card log (same scope and service) when the feedback
-- arrived; 0 counts against the sender's daily allowance for feedback on other cards.
ALTER TABLE feedback ADD COLUMN card_served INTEGER NOT NULL DEFAULT 1;

CREATE INDEX IF NOT EXISTS snooze_scope_patient ON snooze (scope, patient_hash, until_at);
CREATE INDEX IF NOT EXISTS feedback_received_at ON feedback (received_at);
CREATE INDEX IF NOT EXISTS feedback_unserved ON feedback (scope, card_served, received_at);

-- Caller text stored before this release: override displays (any length), comments past the new
-- bound, and the raw item bodies that held both. The codes, outcomes and times stay.
UPDATE feedback SET override_display = NULL WHERE override_display IS NOT NULL;
UPDATE feedback SET user_comment = substr(user_comment, 1, 1000) WHERE length(user_comment) > 1000;
UPDATE feedback SET body = '{}' WHERE length(body) > 4096;
UPDATE snooze SET reason_display = reason_code;
