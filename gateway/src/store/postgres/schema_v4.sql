-- Version 4: case statistics (Fallzahlen; see model::cases and store::postgres::cases).
-- Triggers append one row per event to case_events (no lock on a shared
-- counter row, so concurrent transactions of several instances never wait on
-- each other); the fold (one instance at a time, under an advisory lock)
-- adds them into case_counts per hour, day, week and month of the zone.
CREATE TABLE case_events (
    id           BIGSERIAL PRIMARY KEY,
    at_ms        BIGINT NOT NULL,
    event        TEXT NOT NULL,
    portal       TEXT NOT NULL,
    leistung     TEXT NOT NULL,
    destination  TEXT NOT NULL,
    target       TEXT NOT NULL,
    latency_ms   BIGINT
);
CREATE TABLE case_counts (
    period       TEXT NOT NULL,
    start        BIGINT NOT NULL,
    event        TEXT NOT NULL,
    leistung     TEXT NOT NULL,
    destination  TEXT NOT NULL,
    portal       TEXT NOT NULL,
    target       TEXT NOT NULL,
    n            BIGINT NOT NULL,
    PRIMARY KEY (period, start, event, leistung, destination, portal, target)
);
-- Deliveries per bucket of the times to delivery (model::cases::LATENCY_BOUNDS),
-- per Leistung and target.
CREATE TABLE case_latency (
    period       TEXT NOT NULL,
    start        BIGINT NOT NULL,
    leistung     TEXT NOT NULL,
    target       TEXT NOT NULL,
    h0 BIGINT NOT NULL DEFAULT 0,
    h1 BIGINT NOT NULL DEFAULT 0,
    h2 BIGINT NOT NULL DEFAULT 0,
    h3 BIGINT NOT NULL DEFAULT 0,
    h4 BIGINT NOT NULL DEFAULT 0,
    h5 BIGINT NOT NULL DEFAULT 0,
    h6 BIGINT NOT NULL DEFAULT 0,
    h7 BIGINT NOT NULL DEFAULT 0,
    h8 BIGINT NOT NULL DEFAULT 0,
    h9 BIGINT NOT NULL DEFAULT 0,
    h10 BIGINT NOT NULL DEFAULT 0,
    h11 BIGINT NOT NULL DEFAULT 0,
    h12 BIGINT NOT NULL DEFAULT 0,
    h13 BIGINT NOT NULL DEFAULT 0,
    h14 BIGINT NOT NULL DEFAULT 0,
    h15 BIGINT NOT NULL DEFAULT 0,
    h16 BIGINT NOT NULL DEFAULT 0,
    h17 BIGINT NOT NULL DEFAULT 0,
    h18 BIGINT NOT NULL DEFAULT 0,
    h19 BIGINT NOT NULL DEFAULT 0,
    h20 BIGINT NOT NULL DEFAULT 0,
    h21 BIGINT NOT NULL DEFAULT 0,
    h22 BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (period, start, leistung, target)
);
CREATE TABLE case_zone (
    from_ms    BIGINT PRIMARY KEY,
    offset_ms  BIGINT NOT NULL
);
CREATE TABLE case_buckets (
    upper_ms  BIGINT PRIMARY KEY
);

CREATE FUNCTION case_accepted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO case_events (at_ms, event, portal, leistung, destination, target)
    VALUES ((extract(epoch FROM NEW.received_at::timestamptz) * 1000)::bigint, 'accepted',
            NEW.portal, NEW.leistung, NEW.destination, '');
    RETURN NULL;
END $$;
CREATE TRIGGER case_accepted AFTER INSERT ON submissions
    FOR EACH ROW EXECUTE FUNCTION case_accepted();

CREATE FUNCTION case_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('delivered', 'parked', 'discarded') AND NEW.state IS DISTINCT FROM OLD.state THEN
        INSERT INTO case_events (at_ms, event, portal, leistung, destination, target, latency_ms)
        SELECT CASE WHEN NEW.updated_ms > 0 THEN NEW.updated_ms
                    ELSE (extract(epoch FROM now()) * 1000)::bigint END,
               NEW.state, s.portal, s.leistung, s.destination, NEW.target,
               CASE WHEN NEW.state = 'delivered' THEN greatest(NEW.updated_ms - NEW.created_at_ms, 0) END
        FROM submissions s WHERE s.id = NEW.submission_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER case_outcome AFTER UPDATE OF state ON deliveries
    FOR EACH ROW EXECUTE FUNCTION case_outcome();

-- What the store held before: submissions when received, outcomes when last changed.
INSERT INTO case_events (at_ms, event, portal, leistung, destination, target)
SELECT (extract(epoch FROM received_at::timestamptz) * 1000)::bigint, 'accepted', portal, leistung, destination, ''
FROM submissions;
INSERT INTO case_events (at_ms, event, portal, leistung, destination, target, latency_ms)
SELECT CASE WHEN d.updated_ms > 0 THEN d.updated_ms ELSE d.created_at_ms END, d.state,
       s.portal, s.leistung, s.destination, d.target,
       CASE WHEN d.state = 'delivered' THEN greatest(d.updated_ms - d.created_at_ms, 0) END
FROM deliveries d JOIN submissions s ON s.id = d.submission_id
WHERE d.state IN ('delivered', 'parked', 'discarded');
