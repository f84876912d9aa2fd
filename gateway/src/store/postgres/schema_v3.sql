-- Version 3: settings operators make at run time (paused targets; targets
-- and routes registered over the operator API).
CREATE TABLE settings (
    kind        TEXT NOT NULL,
    id          TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
