package pgqrs

import (
	"encoding/json"
	"testing"
	"time"
)

// TestUpgradeKeepsMessages installs the schema as it was before SQLite
// archived in place (migrations 0001 and 0002), fills it the way that
// schema's triggers did (a live, a leased, a delayed, an archived, a
// dead-lettered and a deleted message), upgrades it with Install and checks
// that every message is where it was, that IDs are not reused, and that the
// upgraded rows work: the lease is still the old consumer's, the dead
// letter replays.
func TestUpgradeKeepsMessages(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			s := openBackend(t, b)
			if s.d.migrations != "sqlite" {
				t.Skipf("%s has no migration after 0002_workflows.sql", b)
			}
			ctx := t.Context()
			if err := s.migrateTo(ctx, 2); err != nil {
				t.Fatalf("install 0001 and 0002: %v", err)
			}
			db := s.DB()
			row := func(query string, args ...any) int64 {
				t.Helper()
				var id int64
				if err := db.QueryRowContext(ctx, query, args...).Scan(&id); err != nil {
					t.Fatalf("%s: %v", query, err)
				}
				return id
			}
			exec := func(query string, args ...any) {
				t.Helper()
				if _, err := db.ExecContext(ctx, query, args...); err != nil {
					t.Fatalf("%s: %v", query, err)
				}
			}
			const now = `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`
			queue := row(`INSERT INTO pgqrs_queues (name) VALUES ('upgrade') RETURNING id`)
			consumer := row(`INSERT INTO pgqrs_workers (name, queue_id, role) VALUES ('old-consumer', ?1, 'consumer') RETURNING id`, queue)
			producer := row(`INSERT INTO pgqrs_workers (name, queue_id, role) VALUES ('old-producer', ?1, 'producer') RETURNING id`, queue)
			var ids [6]int64 // live, leased, delayed, archived, dead, deleted
			for i := range ids {
				ids[i] = row(`INSERT INTO pgqrs_messages (queue_id, payload, vt, producer_worker_id)
VALUES (?1, json_object('n', ?2), `+now+`, ?3) RETURNING id`, queue, i, producer)
			}
			live, leased, delayed, archived, dead, deleted := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]
			exec(`UPDATE pgqrs_messages SET consumer_worker_id = ?1, read_ct = 1, dequeued_at = `+now+`,
    vt = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+300 seconds') WHERE id = ?2`, consumer, leased)
			exec(`UPDATE pgqrs_messages SET vt = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+3600 seconds') WHERE id = ?1`, delayed)
			// The old schema's ways out of pgqrs_messages: a DELETE archives,
			// archive_as 'dead' dead-letters, 'gone' deletes.
			exec(`UPDATE pgqrs_messages SET consumer_worker_id = ?1, read_ct = 1, dequeued_at = `+now+` WHERE id = ?2`, consumer, archived)
			exec(`DELETE FROM pgqrs_messages WHERE id = ?1`, archived)
			exec(`UPDATE pgqrs_messages SET read_ct = 3, last_error = 'boom', archive_as = 'dead' WHERE id = ?1`, dead)
			exec(`UPDATE pgqrs_messages SET archive_as = 'gone' WHERE id = ?1`, deleted)
			if n := row(`SELECT count(*) FROM pgqrs_archive`); n != 2 {
				t.Fatalf("the old schema archived %d messages, want 2", n)
			}

			a := s.Admin()
			if err := a.Install(ctx); err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			if err := a.Verify(ctx); err != nil {
				t.Fatalf("verify after the upgrade: %v", err)
			}
			m := metrics(t, s, "upgrade")
			if m.Visible != 1 || m.Leased != 1 || m.Delayed != 1 || m.Archived != 1 || m.Dead != 1 {
				t.Errorf("metrics after the upgrade = %+v; want one visible, leased, delayed, archived and dead", m)
			}
			got, err := a.GetArchived(ctx, "upgrade", archived)
			if err != nil {
				t.Fatalf("archived message: %v", err)
			}
			if got.Dead || got.ReadCount != 1 || string(got.Payload) != `{"n":3}` || got.ArchivedAt.IsZero() {
				t.Errorf("archived message = %+v", got)
			}
			dls, err := a.ListDeadLetters(ctx, "upgrade", ArchivePage{})
			if err != nil {
				t.Fatal(err)
			}
			if len(dls) != 1 || dls[0].ID != dead || !dls[0].Dead || dls[0].ReadCount != 3 || dls[0].LastError != "boom" {
				t.Fatalf("dead letters = %+v", dls)
			}
			if _, err := a.GetArchived(ctx, "upgrade", deleted); err == nil {
				t.Errorf("the deleted message came back in the archive")
			}

			// A new consumer finds only the live message; the lease stays the
			// old consumer's until it is released.
			p, c := fixtureFor(t, s, "upgrade")
			msgs := mustDequeue(t, c, 10)
			if len(msgs) != 1 || msgs[0].ID != live || string(msgs[0].Payload) != `{"n":0}` {
				t.Fatalf("claim after the upgrade = %+v; want message %d", msgs, live)
			}
			if err := c.Archive(ctx, live); err != nil {
				t.Fatal(err)
			}
			released, err := a.StopWorker(ctx, consumer)
			if err != nil || released != 1 {
				t.Fatalf("stop the old consumer = %d, %v; want its one lease released", released, err)
			}
			msgs = mustDequeue(t, c, 10)
			if len(msgs) != 1 || msgs[0].ID != leased || msgs[0].ReadCount != 2 {
				t.Fatalf("claim after the release = %+v; want message %d, second delivery", msgs, leased)
			}

			// IDs go on after the highest ever given, the deleted one's too.
			if id := mustEnqueue(t, p, 7); id <= deleted {
				t.Errorf("new message ID %d reuses an ID up to %d", id, deleted)
			}
			if n, err := a.ReplayDeadLetters(ctx, "upgrade", []int64{dead}); err != nil || n != 1 {
				t.Fatalf("replay = %d, %v", n, err)
			}
			msgs = mustDequeue(t, c, 10)
			var replayed *Message
			for _, msg := range msgs {
				if msg.ID == dead {
					replayed = msg
				}
			}
			if replayed == nil || replayed.ReadCount != 1 || replayed.LastError != "" {
				t.Fatalf("claim after the replay = %s; want message %d as new", jsonOf(msgs), dead)
			}
			if st, err := a.SystemStats(ctx); err != nil || st.Archived != 2 || st.Dead != 0 {
				t.Errorf("system stats = %+v, %v; want the two archived messages, no dead letter", st, err)
			}
		})
	}
}

// fixtureFor returns a producer and a consumer on an existing queue.
func fixtureFor(t *testing.T, s *Store, queue string) (*Producer, *Consumer) {
	t.Helper()
	p, err := s.Producer(t.Context(), queue)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	c, err := s.Consumer(t.Context(), queue)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	return p, c
}

func jsonOf(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}

// TestUpgradePartitionsArchive installs a PostgreSQL schema at 0008 (the
// archive one table), archives and dead-letters messages, back-dates some
// to two days ago, upgrades with Install (migration 0009 partitions the
// archive by day) and checks that every archived row and dead letter is
// kept, in the partition of its day, and that replay still works.
func TestUpgradePartitionsArchive(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			s := openBackend(t, b)
			if s.d.migrations != "postgres" {
				t.Skipf("%s keeps its archive in place", b)
			}
			ctx := t.Context()
			if err := s.migrateTo(ctx, 8); err != nil {
				t.Fatalf("install up to 0008: %v", err)
			}
			a := s.Admin()
			if _, err := a.CreateQueue(ctx, "upgrade"); err != nil {
				t.Fatal(err)
			}
			p, c := fixtureFor(t, s, "upgrade")
			ids, err := p.EnqueueBatch(ctx, []any{1, 2, 3, 4, 5})
			if err != nil {
				t.Fatal(err)
			}
			msgs := mustDequeue(t, c, 5)
			if len(msgs) != 5 {
				t.Fatalf("claimed %d of 5", len(msgs))
			}
			if _, err := c.ArchiveBatch(ctx, ids[:3]); err != nil {
				t.Fatal(err)
			}
			// The last two: released, then dead-lettered for their one attempt.
			if _, err := c.ReleaseBatch(ctx, ids[3:], 0); err != nil {
				t.Fatal(err)
			}
			if n, err := a.MoveToDLQ(ctx, 1); err != nil || n != 2 {
				t.Fatalf("MoveToDLQ = %d, %v", n, err)
			}
			if _, err := s.DB().ExecContext(ctx, s.d.qualify(`UPDATE pgqrs_archive SET archived_at = archived_at - interval '2 days' WHERE id = ANY ($1::bigint[])`),
				s.d.idsArg([]int64{ids[0], ids[3]})); err != nil {
				t.Fatal(err)
			}
			var kind string
			if err := s.DB().QueryRowContext(ctx, `SELECT relkind FROM pg_class WHERE oid = $1::regclass`, s.d.relation("pgqrs_archive")).Scan(&kind); err != nil || kind != "r" {
				t.Fatalf("archive at 0008 is relkind %q, %v; want a plain table", kind, err)
			}

			if err := a.Install(ctx); err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			if err := a.Verify(ctx); err != nil {
				t.Fatalf("verify after the upgrade: %v", err)
			}
			if err := s.DB().QueryRowContext(ctx, `SELECT relkind FROM pg_class WHERE oid = $1::regclass`, s.d.relation("pgqrs_archive")).Scan(&kind); err != nil || kind != "p" {
				t.Fatalf("archive after 0009 is relkind %q, %v; want partitioned", kind, err)
			}
			m := metrics(t, s, "upgrade")
			if m.Archived != 3 || m.Dead != 2 {
				t.Errorf("after the upgrade: %d archived, %d dead; want 3, 2", m.Archived, m.Dead)
			}
			for _, id := range ids {
				if _, err := a.GetArchived(ctx, "upgrade", id); err != nil {
					t.Errorf("archived message %d after the upgrade: %v", id, err)
				}
			}
			// The back-dated rows sit in the partition of their day, not the default.
			old := time.Now().UTC().Add(-48 * time.Hour).Format("20060102")
			var n int64
			if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM `+s.d.relation("pgqrs_archive_p"+old)).Scan(&n); err != nil || n != 2 {
				t.Errorf("partition of two days ago holds %d rows, %v; want 2", n, err)
			}
			if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM `+s.d.relation("pgqrs_archive_default")).Scan(&n); err != nil || n != 0 {
				t.Errorf("default partition holds %d rows, %v; want 0", n, err)
			}
			if n, err := a.ReplayAllDeadLetters(ctx, "upgrade"); err != nil || n != 2 {
				t.Fatalf("replay after the upgrade = %d, %v; want 2", n, err)
			}
			got := mustDequeue(t, c, 10)
			if len(got) != 2 {
				t.Fatalf("claimed %d replayed messages; want 2", len(got))
			}
			if _, err := c.ArchiveBatch(ctx, msgIDs(got)); err != nil {
				t.Fatalf("archive the replayed messages: %v", err)
			}
			if m := metrics(t, s, "upgrade"); m.Archived != 5 || m.Dead != 0 {
				t.Errorf("after replay and archive: %d archived, %d dead; want 5, 0", m.Archived, m.Dead)
			}
		})
	}
}
