-- Version 3: settings operators make at run time (paused targets; targets
-- and routes registered over the operator API), and each target's oldest
-- waiting delivery by index (a gauge read at every scrape).
CREATE TABLE settings (
    kind        TEXT NOT NULL,
    id          TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX deliveries_age ON deliveries(target, state, created_at_ms);
