-- Version 5: replies. A reply is a submission in the other direction,
-- `in_reply_to` names the submission it answers; the case statistics count
-- it as `replied` (by the answered submission's Leistung, destination and
-- portal), not as `accepted`.
ALTER TABLE submissions ADD COLUMN in_reply_to TEXT;
CREATE INDEX submissions_replies ON submissions (in_reply_to) WHERE in_reply_to IS NOT NULL;

CREATE OR REPLACE FUNCTION case_accepted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO case_events (at_ms, event, portal, leistung, destination, target)
    VALUES ((extract(epoch FROM NEW.received_at::timestamptz) * 1000)::bigint,
            CASE WHEN NEW.in_reply_to IS NULL THEN 'accepted' ELSE 'replied' END,
            NEW.portal, NEW.leistung, NEW.destination, '');
    RETURN NULL;
END $$;
