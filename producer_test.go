package pgqrs

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEnqueueBatch(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "batch")
		got, err := p.EnqueueBatch(ctx, []any{"a", map[string]int{"b": 2}, json.RawMessage(`["c"]`)})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || !(got[0] < got[1] && got[1] < got[2]) {
			t.Fatalf("batch IDs = %v, want 3 ascending", got)
		}
		msgs := mustDequeue(t, c, 10)
		if diff := cmp.Diff(got, msgIDs(msgs)); diff != "" {
			t.Errorf("dequeued (-want +got):\n%s", diff)
		}
		var payloads []string
		for _, m := range msgs {
			payloads = append(payloads, strings.ReplaceAll(string(m.Payload), " ", ""))
		}
		if diff := cmp.Diff([]string{`"a"`, `{"b":2}`, `["c"]`}, payloads); diff != "" {
			t.Errorf("payloads in order (-want +got):\n%s", diff)
		}

		// All or nothing: one bad payload rejects the batch.
		_, err = p.EnqueueBatch(ctx, []any{"ok", json.RawMessage(`{"broken"`), "ok"})
		wantErr(t, err, ErrInvalidPayload)
		if !strings.Contains(err.Error(), "payload 1") {
			t.Errorf("error does not name the bad payload: %v", err)
		}
		if m := metrics(t, s, "batch"); m.Pending != 0 {
			t.Errorf("rejected batch left %d messages", m.Pending)
		}
		empty, err := p.EnqueueBatch(ctx, nil)
		if err != nil || len(empty) != 0 {
			t.Errorf("empty batch = %v, %v; want no IDs, no error", empty, err)
		}
		delayed, err := p.EnqueueBatch(ctx, []any{1, 2}, Delay(time.Hour))
		if err != nil || len(delayed) != 2 {
			t.Fatal(err)
		}
		if m := metrics(t, s, "batch"); m.Delayed != 2 {
			t.Errorf("delayed batch metrics = %+v", m)
		}
	})
}

func TestEnqueueTx(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "tx")
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.EnqueueTx(ctx, tx, "rolled back"); err != nil {
			t.Fatal(err)
		}
		if _, err := p.EnqueueBatchTx(ctx, tx, []any{"also", "rolled back"}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if got := mustDequeue(t, c, 10); len(got) != 0 {
			t.Fatalf("rolled-back messages exist: %v", msgIDs(got))
		}

		tx, err = s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		id, err := p.EnqueueTx(ctx, tx, "committed")
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		got := mustDequeue(t, c, 10)
		if len(got) != 1 || got[0].ID != id {
			t.Fatalf("after commit dequeued %v, want [%d]", msgIDs(got), id)
		}

		// ArchiveTx: rolled back leaves the lease in place; committed archives.
		tx, err = s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ArchiveTx(ctx, tx, id); err != nil {
			t.Fatal(err)
		}
		tx.Rollback()
		if m := metrics(t, s, "tx"); m.Leased != 1 || m.Archived != 0 {
			t.Fatalf("rolled-back archive changed the message: %+v", m)
		}
		tx, err = s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ArchiveTx(ctx, tx, id); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if m := metrics(t, s, "tx"); m.Leased != 0 || m.Archived != 1 {
			t.Fatalf("committed archive: %+v", m)
		}

		// DeleteTx on a message it holds.
		id2 := mustEnqueue(t, p, "to delete")
		mustDequeue(t, c, 1)
		tx, err = s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteTx(ctx, tx, id2); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if m := metrics(t, s, "tx"); m.Leased+m.Pending != 0 {
			t.Fatalf("deleted message still live: %+v", m)
		}
		_, err = p.EnqueueTx(ctx, nil, "x")
		wantErr(t, err, ErrInvalidArgument)
		wantErr(t, c.ArchiveTx(ctx, nil, 1), ErrInvalidArgument)
	})
}

// TestUnstorablePayloads: JSON that one backend cannot store (invalid UTF-8
// inside a string, which json.Valid lets through; a NUL escape, which
// Postgres jsonb refuses) is ErrInvalidPayload on every backend, checked
// before any SQL, on every path; a bad item fails its whole batch, named by
// its index, and nothing is inserted.
func TestUnstorablePayloads(t *testing.T) {
	t.Parallel()
	bad := map[string]any{
		"invalid UTF-8 raw":   json.RawMessage("\"\x8a\""),
		"invalid UTF-8 bytes": []byte("{\"k\":\"a\xffb\"}"),
		"invalid UTF-8 field": struct{ V json.RawMessage }{json.RawMessage("\"\xc3\"")},
		"NUL escape":          json.RawMessage(`{"a":"\u0000"}`),
		"NUL in a string":     "a\x00b",
	}
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "unstorable")
		for name, payload := range bad {
			_, err := p.Enqueue(ctx, payload)
			wantErr(t, err, ErrInvalidPayload)
			if strings.Contains(err.Error(), "pq:") || strings.Contains(err.Error(), "SQL") {
				t.Errorf("%s: a database error, not pgqrs's own check: %v", name, err)
			}
			tx, err := s.DB().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.EnqueueTx(ctx, tx, payload)
			wantErr(t, err, ErrInvalidPayload)
			if err := tx.Rollback(); err != nil {
				t.Errorf("%s: rollback: %v", name, err)
			}
			_, err = p.EnqueueBatch(ctx, []any{"fine", payload, "fine"})
			wantErr(t, err, ErrInvalidPayload)
			if err == nil || !strings.Contains(err.Error(), "payload 1") {
				t.Errorf("%s: batch error %v does not name payload 1", name, err)
			}
		}
		// Escaped forms are fine, and come back as sent.
		for _, ok := range []string{`"\\u0000"`, `"\u00e9\ud83d\ude00"`, `"é😀"`} {
			if _, err := p.Enqueue(ctx, json.RawMessage(ok)); err != nil {
				t.Errorf("Enqueue(%s): %v", ok, err)
			}
		}
		msgs, err := c.Dequeue(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 3 {
			t.Errorf("dequeued %d messages, want the 3 good ones (nothing from a refused batch)", len(msgs))
		}
	})
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "bad")
		for name, payload := range map[string]any{
			"nil":          nil,
			"func":         func() {},
			"channel":      make(chan int),
			"broken raw":   json.RawMessage(`{"a":`),
			"broken bytes": []byte("not json"),
			"empty raw":    json.RawMessage(``),
		} {
			_, err := p.Enqueue(ctx, payload)
			if !strings.Contains(err.Error(), "invalid payload") {
				t.Errorf("%s: error %v does not say the payload is invalid", name, err)
			}
			wantErr(t, err, ErrInvalidPayload)
		}
		_, err := p.Enqueue(ctx, strings.Repeat("x", 1<<20))
		wantErr(t, err, ErrPayloadTooLarge)
		_, err = p.Enqueue(ctx, "x", Delay(-time.Second))
		wantErr(t, err, ErrInvalidArgument)
		_, err = p.Enqueue(ctx, "x", At(time.Time{}))
		wantErr(t, err, ErrInvalidArgument)
		_, err = p.EnqueueBatch(ctx, make([]any, 1001))
		wantErr(t, err, ErrBatchTooLarge)
		_, err = c.Dequeue(ctx, 0)
		wantErr(t, err, ErrInvalidArgument)
		_, err = c.Dequeue(ctx, 1001)
		wantErr(t, err, ErrBatchTooLarge)
		_, err = c.Dequeue(ctx, 1, VisibilityTimeout(-time.Second))
		wantErr(t, err, ErrInvalidArgument)
		_, err = c.ArchiveBatch(ctx, make([]int64, 1001))
		wantErr(t, err, ErrBatchTooLarge)
		if m := metrics(t, s, "bad"); m.Pending > 1 {
			t.Errorf("bad input left %d messages", m.Pending)
		}

		// A closed store refuses everything.
		s.Close()
		_, err = p.Enqueue(ctx, "x")
		wantErr(t, err, ErrClosed)
		_, err = c.Dequeue(ctx, 1)
		wantErr(t, err, ErrClosed)
		wantErr(t, c.Archive(ctx, 1), ErrClosed)
		_, err = s.Admin().CreateQueue(ctx, "q")
		wantErr(t, err, ErrClosed)
		wantErr(t, s.Admin().Install(ctx), ErrClosed)
		_, err = s.Producer(ctx, "bad")
		wantErr(t, err, ErrClosed)
	})
}

func TestSmallerLimits(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		small, err := New(s.DB(), s.Dialect(), append(schemaOpt(s), WithMaxPayloadBytes(10), WithMaxBatch(2))...)
		if err != nil {
			t.Fatal(err)
		}
		p, c := fixture(t, small, "small")
		_, err = p.Enqueue(t.Context(), "01234567890")
		wantErr(t, err, ErrPayloadTooLarge)
		_, err = p.EnqueueBatch(t.Context(), []any{1, 2, 3})
		wantErr(t, err, ErrBatchTooLarge)
		_, err = c.Dequeue(t.Context(), 3)
		wantErr(t, err, ErrBatchTooLarge)
	})
}

func TestOpenAndNewErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, dsn := range []string{"", "nonsense", "mysql://u:p@h/db", "sqlite:"} {
		_, err := Open(ctx, dsn)
		wantErr(t, err, ErrInvalidDSN)
	}
	_, err := New(nil, SQLite)
	wantErr(t, err, ErrInvalidArgument)
	s, err := Open(ctx, "sqlite:"+t.TempDir()+"/x.db")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = New(s.DB(), "oracle")
	wantErr(t, err, ErrInvalidArgument)
	_, err = New(s.DB(), SQLite, WithSchema("app"))
	wantErr(t, err, ErrInvalidArgument)
	for _, bad := range []string{"", "1abc", `a"b`, "a;drop", strings.Repeat("s", 64)} {
		_, err = New(s.DB(), Postgres, WithSchema(bad))
		wantErr(t, err, ErrInvalidName)
	}
	_, err = New(s.DB(), SQLite, WithMaxBatch(0))
	wantErr(t, err, ErrInvalidArgument)
	_, err = New(s.DB(), SQLite, WithMaxPayloadBytes(-1))
	wantErr(t, err, ErrInvalidArgument)

	// An unreachable server: a clear error that never shows the password.
	_, err = Open(ctx, "postgres://app:s3cretpw@127.0.0.1:1/db?sslmode=disable&connect_timeout=2")
	wantErr(t, err, ErrUnreachable)
	if strings.Contains(err.Error(), "s3cretpw") {
		t.Errorf("error leaks the password: %v", err)
	}
	// A server on loopback that accepts and never answers: Open gives up at
	// ctx's deadline, and says so.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	ctx2, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = Open(ctx2, "postgres://app:s3cretpw@"+silent.Addr().String()+"/db?sslmode=disable")
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("open past its deadline = %v, want ErrUnreachable wrapping context.DeadlineExceeded", err)
	}
	_, err = Open(ctx, "http://127.0.0.1:1?authToken=tok3n-very-secret")
	wantErr(t, err, ErrUnreachable)
	if strings.Contains(err.Error(), "tok3n-very-secret") {
		t.Errorf("error leaks the token: %v", err)
	}

	// A borrowed pool stays open after Close.
	borrowed, err := New(s.DB(), SQLite)
	if err != nil {
		t.Fatal(err)
	}
	borrowed.Close()
	if err := s.DB().PingContext(ctx); err != nil {
		t.Errorf("Close closed a borrowed pool: %v", err)
	}
}

func TestDSNParsing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		dsn    string
		want   Dialect
		driver string
	}{
		{"postgres://u@h/db", Postgres, "postgres"},
		{"postgresql://u@h/db", Postgres, "postgres"},
		{"host=/tmp user=u password=p dbname=db", Postgres, "postgres"},
		{"sqlite:app.db", SQLite, "sqlite"},
		{"sqlite::memory:", SQLite, "sqlite"},
		{"file:/tmp/app.db?cache=private", SQLite, "sqlite"},
		{"libsql://db.example.com?authToken=x", Turso, "libsql"},
		{"http://127.0.0.1:8080", Turso, "libsql"},
		{"wss://db.example.com", Turso, "libsql"},
	} {
		info, err := parseDSN(tc.dsn)
		if err != nil || info.dialect != tc.want || info.driver != tc.driver {
			t.Errorf("parseDSN(%q) = %s, %s, %v; want %s, %s", tc.dsn, info.dialect, info.driver, err, tc.want, tc.driver)
		}
		if info.dialect == SQLite && !strings.Contains(info.source, "_txlock=immediate") {
			t.Errorf("parseDSN(%q) source %q lacks immediate transactions", tc.dsn, info.source)
		}
	}
	if got := redactDSN("postgres://app:pw@db:5432/x?password=pw"); strings.Contains(got, "pw@") || strings.Contains(got, "password") {
		t.Errorf("redactDSN leaks: %s", got)
	}
}

func TestCloseIsClean(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			dsn, opts := backendDSN(t, b)
			s, err := Open(t.Context(), dsn, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second close: %v", err)
			}
		})
	}
}

// TestEnqueueBatchKeepsEveryPayload: scalars, big numbers, escapes and
// nested values come back from a batch as they come back from single
// enqueues.
func TestEnqueueBatchKeepsEveryPayload(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "shapes")
		payloads := []any{
			json.RawMessage(`12345678901234567890`), 1.5, -2e10, true, false, json.RawMessage(`null`),
			"é \"quoted\" \\ back\nline \u2028", map[string]any{"n": json.Number("98765432109876543210"), "a": []int{1}},
			[]any{}, map[string]any{},
		}
		if _, err := p.EnqueueBatch(t.Context(), payloads); err != nil {
			t.Fatal(err)
		}
		singles := make([]int64, len(payloads))
		for i, v := range payloads {
			singles[i] = mustEnqueue(t, p, v)
		}
		msgs := mustDequeue(t, c, 100)
		if len(msgs) != 2*len(payloads) {
			t.Fatalf("got %d messages, want %d", len(msgs), 2*len(payloads))
		}
		decode := func(raw json.RawMessage) any {
			d := json.NewDecoder(strings.NewReader(string(raw)))
			d.UseNumber()
			var v any
			if err := d.Decode(&v); err != nil {
				t.Fatalf("payload %s: %v", raw, err)
			}
			return v
		}
		for i := range payloads {
			batch, single := decode(msgs[i].Payload), decode(msgs[len(payloads)+i].Payload)
			if diff := cmp.Diff(single, batch); diff != "" {
				t.Errorf("payload %d: batch differs from single (-single +batch):\n%s", i, diff)
			}
		}
		if got := decode(msgs[0].Payload); got != json.Number("12345678901234567890") {
			t.Errorf("big integer came back as %v", got)
		}
	})
}
