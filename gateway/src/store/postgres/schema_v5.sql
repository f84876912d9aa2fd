-- Version 5: replies. A reply is a submission in the other direction,
-- `in_reply_to` names the submission it answers; the case statistics count
-- it as `replied` (by the answered submission's Leistung, destination and
-- portal), not as `accepted`, and its delivery to the portal is no case outcome.
ALTER TABLE submissions ADD COLUMN in_reply_to TEXT;
ALTER TABLE submissions ADD COLUMN reply_by TEXT;
ALTER TABLE submissions ADD COLUMN reply_type TEXT;
CREATE INDEX submissions_replies ON submissions (in_reply_to) WHERE in_reply_to IS NOT NULL;

CREATE OR REPLACE FUNCTION case_accepted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO case_events (at_ms, event, portal, leistung, destination, target)
    VALUES ((extract(epoch FROM NEW.received_at::timestamptz) * 1000)::bigint,
            CASE WHEN NEW.in_reply_to IS NULL THEN 'accepted' ELSE 'replied' END,
            NEW.portal, NEW.leistung, NEW.destination, '');
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION case_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('delivered', 'parked', 'discarded') AND NEW.state IS DISTINCT FROM OLD.state THEN
        INSERT INTO case_events (at_ms, event, portal, leistung, destination, target, latency_ms)
        SELECT CASE WHEN NEW.updated_ms > 0 THEN NEW.updated_ms
                    ELSE (extract(epoch FROM now()) * 1000)::bigint END,
               NEW.state, s.portal, s.leistung, s.destination, NEW.target,
               CASE WHEN NEW.state = 'delivered' THEN greatest(NEW.updated_ms - NEW.created_at_ms, 0) END
        FROM submissions s WHERE s.id = NEW.submission_id AND s.in_reply_to IS NULL;
    END IF;
    RETURN NULL;
END $$;
