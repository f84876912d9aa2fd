#!/usr/bin/env python3
"""A year of synthetic history in an embedded store, for bench/stats.sh.

Writes submissions and deliveries straight into the store's tables (the
daemon is stopped) and turns the store back into schema version 7, from
before case statistics: the daemon's next start counts the history with the
migration's own code (the back-fill; the same counters the triggers keep,
see the migration test), and bench/stats.sh times that start. Deliveries
are written in their final state (delivered or parked, at a time after
acceptance); no envelopes (retention would have removed them by now).

    stats_history.py DATA_DIR N [DAYS]

The shape: 60 Leistungen with Zipf-like popularity, 30 destinations
(Gemeindeschluessel), 3 portals, 8 targets chosen by Leistung, a second
target for a quarter of the submissions, 2 % of deliveries parked, times to
delivery log-normal around a second with a tail to hours.
"""
import math
import random
import sqlite3
import sys
import time
import uuid

data_dir, n = sys.argv[1], int(sys.argv[2])
days = int(sys.argv[3]) if len(sys.argv) > 3 else 365
rng = random.Random(20261201)
leistungen = [f"99{rng.randrange(10**11, 10**12)}" for _ in range(60)]
weights = [1 / (i + 1) for i in range(60)]
destinations = [f"05{rng.randrange(100000, 999999)}" for _ in range(30)]
portals = ["portal-demo", "portal-b", "portal-c"]
targets = [f"target-{i}" for i in range(8)]
end_ms = int(time.time() * 1000)
start_ms = end_ms - days * 86_400_000

db = sqlite3.connect(f"{data_dir}/gateway.db", isolation_level=None)
db.execute("PRAGMA synchronous = OFF")
db.execute("PRAGMA journal_mode = WAL")
db.executescript(
    "DROP TRIGGER case_accepted; DROP TRIGGER case_delivered; DROP TRIGGER case_parked;"
    " DROP TRIGGER case_discarded; DROP TABLE case_counts; DROP TABLE case_zone;"
    " DROP TABLE case_buckets; PRAGMA user_version = 7;"
)
began = time.time()
batch = 50_000
made = 0
while made < n:
    k = min(batch, n - made)
    subs, dels = [], []
    times = sorted(rng.randrange(start_ms, end_ms - 3_600_000) for _ in range(k))
    for at in times:
        sid = str(uuid.uuid4())
        li = rng.choices(range(60), weights)[0]
        received = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at / 1000)) + f".{at % 1000:03d}Z"
        subs.append((sid, portals[li % 3], leistungen[li], rng.choice(destinations), received))
        chosen = [targets[li % 8]] + ([targets[(li + 3) % 8]] if rng.random() < 0.25 else [])
        for t in chosen:
            mid = f"{sid}-{t}"
            latency = int(min(math.exp(rng.gauss(6.9, 1.6)), 6 * 3_600_000))
            state = "parked" if rng.random() < 0.02 else "delivered"
            dels.append((mid, sid, t, state, at, at, received, at + latency))
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO submissions (id, portal, leistung, destination, received_at, response) VALUES (?, ?, ?, ?, ?, '{}')",
        subs,
    )
    db.executemany(
        "INSERT INTO deliveries (message_id, submission_id, target, state, attempts, next_attempt_at, created_at_ms, updated_at, updated_ms)"
        " VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)",
        dels,
    )
    db.execute("COMMIT")
    made += k
    print(f"{made} submissions ({time.time() - began:.0f} s)", file=sys.stderr, flush=True)
print(f"history: {n} submissions over {days} days written in {time.time() - began:.0f} s")
