package bench

import "encoding/json"

// sqliteNow is the current time in the fixed text format pgqrs writes on
// SQLite and Turso, so text order is time order.
const sqliteNow = `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`

// sqliteIDs encodes an ID list as one JSON array argument, read back with
// json_each, as pgqrs does.
func sqliteIDs(ids []int64) any {
	data, _ := json.Marshal(ids)
	return string(data)
}

// sqliteFloor is the floor on SQLite and Turso: archive in place. One table
// keeps archived rows, marked by archived_at, and a partial index over the
// live rows serves the claim, so archived rows never stand in its way.
// Without MVCC, an update of one column writes less than moving the row to
// another table (a delete plus an insert).
func sqliteFloor() floorSQL {
	return floorSQL{
		design: "in-place",
		setup: []string{
			`CREATE TABLE IF NOT EXISTS pgqrs_bench_floor_inplace (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id    INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    vt          TEXT NOT NULL DEFAULT (` + sqliteNow + `),
    enqueued_at TEXT NOT NULL DEFAULT (` + sqliteNow + `),
    read_ct     INTEGER NOT NULL DEFAULT 0,
    consumer_id INTEGER,
    archived_at TEXT)`,
			// The claim's WHERE names the index's predicate, so SQLite uses
			// it; archived_at among its columns makes it a covering index
			// for the claim's sub-select.
			`CREATE INDEX IF NOT EXISTS pgqrs_bench_floor_inplace_live ON pgqrs_bench_floor_inplace (queue_id, vt, id, archived_at) WHERE archived_at IS NULL`,
		},
		tables: []string{"pgqrs_bench_floor_inplace"},
		purge:  []string{`DELETE FROM pgqrs_bench_floor_inplace WHERE queue_id = ?1`},
		fill: `INSERT INTO pgqrs_bench_floor_inplace (queue_id, payload)
SELECT ?1, ?2 -> p.key FROM json_each(?2) AS p ORDER BY p.key`,
		claim: `
UPDATE pgqrs_bench_floor_inplace
SET vt = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+30 seconds'), read_ct = read_ct + 1, consumer_id = ?3
WHERE id IN (
    SELECT id FROM pgqrs_bench_floor_inplace
    WHERE queue_id = ?1 AND archived_at IS NULL AND vt <= ` + sqliteNow + `
    ORDER BY vt, id
    LIMIT ?2
)
RETURNING id, payload`,
		archive: `
UPDATE pgqrs_bench_floor_inplace SET archived_at = ` + sqliteNow + `
WHERE id IN (SELECT value FROM json_each(?1)) AND consumer_id = ?2 AND archived_at IS NULL`,
		ids:       sqliteIDs,
		serialize: true,
	}
}
