package pgqrs

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// childStore opens the Store of a child process that a crash test starts
// and kills: the DSN in env (skipping when unset: the test was not started
// by its parent), in the schema of PGQRS_CRASH_SCHEMA if set, and with the
// options of the "pgbouncer" backend when the DSN is PgBouncer's.
func childStore(t *testing.T, env, parent string) *Store {
	t.Helper()
	dsn := os.Getenv(env)
	if dsn == "" {
		t.Skip("the child process of " + parent)
	}
	var opts []Option
	if schema := os.Getenv("PGQRS_CRASH_SCHEMA"); schema != "" {
		opts = append(opts, WithSchema(schema))
	}
	if dsn == os.Getenv("PGQRS_TEST_PGBOUNCER_DSN") {
		opts = append(opts, WithPreparedStatements(false), WithListenDSN(os.Getenv("PGQRS_TEST_POSTGRES_DSN")))
	}
	s, err := Open(context.Background(), dsn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCrashChild is the process TestCrashRecovery kills: it runs a consumer
// whose handlers announce each message and then hang. It does nothing when
// run on its own.
func TestCrashChild(t *testing.T) {
	s := childStore(t, "PGQRS_CRASH_DSN", "TestCrashRecovery")
	vt, err := time.ParseDuration(os.Getenv("PGQRS_CRASH_VT"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := s.Consumer(ctx, "crash")
	if err != nil {
		t.Fatal(err)
	}
	err = c.Run(ctx, func(ctx context.Context, m *Message) error {
		fmt.Printf("STARTED %d\n", m.ID)
		select {} // hang until killed
	}, &RunOptions{Concurrency: 5, BatchSize: 5, VisibilityTimeout: vt, HeartbeatInterval: 100 * time.Millisecond})
	t.Fatalf("Run returned %v; it should have been killed", err)
}

// startAndKill runs TestCrashChild, waits until its handlers hold n
// messages, kills it with SIGKILL and returns the IDs it had started.
func startAndKill(t *testing.T, dsn, schema string, vt time.Duration, n int) []int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), "PGQRS_CRASH_DSN="+dsn, "PGQRS_CRASH_SCHEMA="+schema, "PGQRS_CRASH_VT="+vt.String())
	return startChild(t, cmd, n)
}

// startChild starts cmd, waits until it printed "STARTED <id>" n times,
// kills it with SIGKILL and returns the IDs, sorted.
func startChild(t *testing.T, cmd *exec.Cmd, n int) []int64 {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan int64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "STARTED "); ok {
				n, _ := strconv.ParseInt(id, 10, 64)
				started <- n
			}
		}
		close(started)
	}()
	var ids []int64
	timeout := time.After(60 * time.Second)
	for len(ids) < n {
		select {
		case id, ok := <-started:
			if !ok {
				cmd.Wait()
				t.Fatalf("child exited after starting %v; stderr:\n%s", ids, stderr.String())
			}
			ids = append(ids, id)
		case <-timeout:
			cmd.Process.Kill()
			t.Fatalf("child started only %v within 60s; stderr:\n%s", ids, stderr.String())
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup runs
		t.Fatal(err)
	}
	cmd.Wait()
	slices.Sort(ids)
	return ids
}

// crashStore opens an installed store on backend, returning the DSN a child
// process opens it with (and s.d.schema, its schema).
func crashStore(t *testing.T, backend string) (string, *Store) {
	t.Helper()
	dsn, opts := backendDSN(t, backend)
	s, err := Open(t.Context(), dsn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if strings.HasPrefix(backend, "turso") {
		wipeTurso(t, s)
	}
	if err := s.Admin().Install(t.Context()); err != nil {
		t.Fatal(err)
	}
	return dsn, s
}

// TestCrashRecovery kills a consumer process in the middle of its handlers
// and checks that nothing is lost: its messages come back when their leases
// expire, or at once when an admin reclaims the dead worker.
func TestCrashRecovery(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dsn, s := crashStore(t, b)
			if _, err := s.Admin().CreateQueue(ctx, "crash"); err != nil {
				t.Fatal(err)
			}
			p, err := s.Producer(ctx, "crash")
			if err != nil {
				t.Fatal(err)
			}

			// 1. Killed mid-handler; the leases (1s) expire; redelivered.
			want, err := p.EnqueueBatch(ctx, []any{1, 2, 3, 4, 5})
			if err != nil {
				t.Fatal(err)
			}
			if got := startAndKill(t, dsn, s.d.schema, time.Second, 5); !cmp.Equal(want, got) {
				t.Fatalf("child started %v, want %v", got, want)
			}
			c, err := s.Consumer(ctx, "crash")
			if err != nil {
				t.Fatal(err)
			}
			var again []*Message
			for len(again) < 5 {
				again = append(again, awaitDequeue(t, c, 10, 20*time.Second)...)
			}
			slices.SortFunc(again, func(a, b *Message) int { return int(a.ID - b.ID) })
			if diff := cmp.Diff(want, msgIDs(again)); diff != "" {
				t.Fatalf("redelivered after the crash (-want +got):\n%s", diff)
			}
			for _, m := range again {
				if m.ReadCount != 2 {
					t.Errorf("message %d read count %d, want 2", m.ID, m.ReadCount)
				}
			}
			if _, err := c.ArchiveBatch(ctx, want); err != nil {
				t.Fatal(err)
			}
			if err := c.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}

			// 2. Killed with hour-long leases; reclaimed at once.
			want, err = p.EnqueueBatch(ctx, []any{6, 7, 8, 9, 10})
			if err != nil {
				t.Fatal(err)
			}
			startAndKill(t, dsn, s.d.schema, time.Hour, 5)
			var released int64
			await(t, 20*time.Second, "reclaim of the killed worker", func() bool {
				_, n, err := s.Admin().ReclaimStale(ctx, 500*time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				released += n
				return released == 5
			})
			c2, err := s.Consumer(ctx, "crash")
			if err != nil {
				t.Fatal(err)
			}
			got := mustDequeue(t, c2, 10)
			if diff := cmp.Diff(want, msgIDs(got)); diff != "" {
				t.Fatalf("reclaimed (-want +got):\n%s", diff)
			}
			if m := metrics(t, s, "crash"); m.Leased != 5 || m.Archived != 5 {
				t.Errorf("metrics = %+v; want nothing lost", m)
			}
		})
	}
}

// crashFlow is the workflow of TestWorkflowCrashRecovery: step "charge"
// records its side effect in a table (so it is counted across processes);
// step "ship" hangs in the child, which is killed there, and completes in
// the parent.
func crashFlow(s *Store, table string, hang bool) *Workflow[int, string] {
	return NewWorkflow("crashflow", func(ctx context.Context, run *Run, amount int) (string, error) {
		ref, err := Step(ctx, run, "charge", func(ctx context.Context) (string, error) {
			_, err := s.DB().ExecContext(ctx, "INSERT INTO "+table+" (run_id, step) VALUES ("+
				strconv.FormatInt(run.ID(), 10)+", 'charge')")
			return fmt.Sprintf("ch_%d", amount), err
		})
		if err != nil {
			return "", err
		}
		return Step(ctx, run, "ship", func(ctx context.Context) (string, error) {
			if hang {
				fmt.Printf("STARTED %d\n", run.ID())
				select {} // hang until killed
			}
			return ref + "/shipped", nil
		})
	})
}

// TestWorkflowCrashChild is the process TestWorkflowCrashRecovery kills.
func TestWorkflowCrashChild(t *testing.T) {
	s := childStore(t, "PGQRS_WFCRASH_DSN", "TestWorkflowCrashRecovery")
	ctx := context.Background()
	err := crashFlow(s, os.Getenv("PGQRS_WFCRASH_TABLE"), true).Serve(ctx, s,
		&RunOptions{Concurrency: 3, VisibilityTimeout: time.Second, HeartbeatInterval: 100 * time.Millisecond})
	t.Fatalf("Serve returned %v; it should have been killed", err)
}

// TestWorkflowCrashRecovery kills a workflow worker process after the first
// step of its runs completed: a new worker finishes the runs, the first
// step's side effect happened exactly once per run, and the results are
// right.
func TestWorkflowCrashRecovery(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dsn, s := crashStore(t, b)
			table := s.d.relation("test_effects")
			if _, err := s.DB().ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+table+" (run_id BIGINT NOT NULL, step TEXT NOT NULL)"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.DB().ExecContext(ctx, "DELETE FROM "+table); err != nil {
				t.Fatal(err)
			}
			wf := crashFlow(s, table, false)
			if err := wf.Register(ctx, s); err != nil {
				t.Fatal(err)
			}
			var runs []int64
			for amount := range 3 {
				id, err := wf.Trigger(ctx, s, 100+amount)
				if err != nil {
					t.Fatal(err)
				}
				runs = append(runs, id)
			}

			// The child completes "charge" for all three runs and is killed
			// inside "ship".
			cmd := exec.Command(os.Args[0], "-test.run=^TestWorkflowCrashChild$", "-test.count=1", "-test.timeout=5m")
			cmd.Env = append(os.Environ(), "PGQRS_WFCRASH_DSN="+dsn, "PGQRS_CRASH_SCHEMA="+s.d.schema, "PGQRS_WFCRASH_TABLE="+table)
			started := startChild(t, cmd, 3)
			if diff := cmp.Diff(runs, started); diff != "" {
				t.Fatalf("child reached the second step of (-want +got):\n%s", diff)
			}
			for _, id := range runs {
				info := runStatus(t, s, id)
				if info.Status != RunRunning || len(info.Steps) != 1 || info.Steps[0].Name != "charge" {
					t.Fatalf("run %d after the crash = %+v, steps %+v", id, info, info.Steps)
				}
			}

			serveInBackground(t, s, wf, fastPoll)
			for i, id := range runs {
				got, err := waitResult(t, s, wf, id)
				if want := fmt.Sprintf("ch_%d/shipped", 100+i); err != nil || got != want {
					t.Errorf("run %d = %q, %v; want %q", id, got, err, want)
				}
			}
			var charges, distinct int
			if err := s.DB().QueryRowContext(ctx, "SELECT count(*), count(DISTINCT run_id) FROM "+table).Scan(&charges, &distinct); err != nil {
				t.Fatal(err)
			}
			if charges != 3 || distinct != 3 {
				t.Errorf("charge side effects: %d for %d runs, want exactly one per run (3)", charges, distinct)
			}
		})
	}
}

// TestProducerCrashChild is the process TestCrashedProducerQueueDelete kills:
// a producer that enqueues one message, announces it and hangs.
func TestProducerCrashChild(t *testing.T) {
	s := childStore(t, "PGQRS_PCRASH_DSN", "TestCrashedProducerQueueDelete")
	ctx := context.Background()
	p, err := s.Producer(ctx, "pcrash")
	if err != nil {
		t.Fatal(err)
	}
	id, err := p.Enqueue(ctx, "from the doomed producer")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("STARTED %d\n", id)
	select {} // hang until killed
}

// TestCrashedProducerQueueDelete kills a producer process: its worker row
// stays live and blocks DeleteQueue until ReclaimStale declares it stale.
func TestCrashedProducerQueueDelete(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dsn, s := crashStore(t, b)
			admin := s.Admin()
			if _, err := admin.CreateQueue(ctx, "pcrash"); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestProducerCrashChild$", "-test.count=1", "-test.timeout=5m")
			cmd.Env = append(os.Environ(), "PGQRS_PCRASH_DSN="+dsn, "PGQRS_CRASH_SCHEMA="+s.d.schema)
			sent := startChild(t, cmd, 1)

			// Its message is processed; only the dead producer is left.
			c, err := s.Consumer(ctx, "pcrash")
			if err != nil {
				t.Fatal(err)
			}
			if got := mustDequeue(t, c, 10); !cmp.Equal(msgIDs(got), sent) {
				t.Fatalf("dequeued %v, want %v", msgIDs(got), sent)
			}
			if err := c.Archive(ctx, sent[0]); err != nil {
				t.Fatal(err)
			}
			if err := c.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			wantErr(t, admin.DeleteQueue(ctx, "pcrash"), ErrQueueInUse)

			var stopped int64
			await(t, 20*time.Second, "reclaim of the killed producer", func() bool {
				w, _, err := admin.ReclaimStale(ctx, 500*time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				stopped += w
				return stopped == 1
			})
			if err := admin.DeleteQueue(ctx, "pcrash"); err != nil {
				t.Fatalf("delete the queue after the reclaim: %v", err)
			}
			_, err = admin.GetQueue(ctx, "pcrash")
			wantErr(t, err, ErrQueueNotFound)
			if ws, err := admin.ListWorkers(ctx, ""); err != nil || len(ws) != 0 {
				t.Errorf("workers left = %+v, %v", ws, err)
			}
		})
	}
}

// TestRunReclaimsCrashedConsumer kills a consumer process holding messages
// leased for ten minutes: the Run loops still running on the queue declare
// it dead and process its messages within seconds, with no admin call, and
// declare no live worker dead, however slow its handlers.
func TestRunReclaimsCrashedConsumer(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dsn, s := crashStore(t, b)
			for _, q := range []string{"crash", "elsewhere"} {
				if _, err := s.Admin().CreateQueue(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			// A consumer of another queue, silent as long: not this queue's
			// business.
			idle, err := s.Consumer(ctx, "elsewhere")
			if err != nil {
				t.Fatal(err)
			}
			p, err := s.Producer(ctx, "crash")
			if err != nil {
				t.Fatal(err)
			}
			want, err := p.EnqueueBatch(ctx, []any{1, 2, 3, 4, 5})
			if err != nil {
				t.Fatal(err)
			}
			started := time.Now()
			if got := startAndKill(t, dsn, s.d.schema, 10*time.Minute, 5); !cmp.Equal(want, got) {
				t.Fatalf("child started %v, want %v", got, want)
			}

			got := make(chan *Message, 10)
			runCtx, cancel := context.WithCancel(ctx)
			var loops []*Consumer
			var done sync.WaitGroup
			t.Cleanup(func() { cancel(); done.Wait() }) // before the store closes
			for range 2 {
				c, err := s.Consumer(ctx, "crash")
				if err != nil {
					t.Fatal(err)
				}
				loops = append(loops, c)
				done.Go(func() {
					err := c.Run(runCtx, func(ctx context.Context, m *Message) error {
						got <- m
						time.Sleep(1500 * time.Millisecond) // slower than ReclaimAfter
						return nil
					}, &RunOptions{HeartbeatInterval: 100 * time.Millisecond, ReclaimAfter: time.Second, PollInterval: 50 * time.Millisecond})
					if err != nil {
						t.Errorf("run: %v", err)
					}
				})
			}
			var again []int64
			timeout := time.After(60 * time.Second)
			for len(again) < 5 {
				select {
				case m := <-got:
					if m.ReadCount != 2 {
						t.Errorf("message %d read count %d, want 2", m.ID, m.ReadCount)
					}
					again = append(again, m.ID)
				case <-timeout:
					t.Fatalf("only %v came back within 60s", again)
				}
			}
			if took := time.Since(started); took > 2*time.Minute {
				t.Errorf("messages came back after %v", took)
			}
			slices.Sort(again)
			if diff := cmp.Diff(want, again); diff != "" {
				t.Fatalf("redelivered (-want +got):\n%s", diff)
			}
			await(t, 30*time.Second, "the messages archived", func() bool {
				return metrics(t, s, "crash").Archived == 5
			})
			for _, c := range loops {
				if st, err := c.Status(ctx); err != nil || st != WorkerPolling {
					t.Errorf("live loop %s is %s, %v; want polling", c.Name(), st, err)
				}
			}
			cancel()
			done.Wait()
			if st, err := idle.Status(ctx); err != nil || st != WorkerReady {
				t.Errorf("consumer of another queue is %s, %v; want ready", st, err)
			}
			ws, err := s.Admin().ListWorkers(ctx, "crash")
			if err != nil {
				t.Fatal(err)
			}
			var stopped int
			for _, w := range ws {
				if w.Role == "consumer" && w.Status == WorkerStopped {
					stopped++
				}
			}
			if stopped != 3 { // the killed one, and both loops after cancel
				t.Errorf("stopped consumers = %d, want 3: %+v", stopped, ws)
			}
		})
	}
}

// stallWrites holds every writer of s's database off for d from a
// connection of its own, as a stalled server or a killed client holding
// the write lock would: BEGIN IMMEDIATE on SQLite and Turso; on PostgreSQL,
// which has no database-wide write lock, an EXCLUSIVE lock on the workers
// table, which stops heartbeats and reclaims and lets reads through. It
// returns once the lock is held; done is closed when it is released.
func stallWrites(t *testing.T, s *Store, d time.Duration) (done <-chan struct{}) {
	t.Helper()
	ctx := t.Context()
	conn, err := s.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "BEGIN IMMEDIATE", "ROLLBACK"
	var lock string
	if s.d.name == Postgres {
		begin, lock = "BEGIN", `LOCK TABLE "`+s.d.schema+`".pgqrs_workers IN EXCLUSIVE MODE`
	}
	if _, err := conn.ExecContext(ctx, begin); err != nil {
		t.Fatalf("%s: %v", begin, err)
	}
	if lock != "" {
		if _, err := conn.ExecContext(ctx, lock); err != nil {
			t.Fatalf("%s: %v", lock, err)
		}
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		defer conn.Close()
		time.Sleep(d) // the stall itself, not a wait for anything
		if _, err := conn.ExecContext(context.Background(), end); err != nil {
			t.Errorf("end the stall: %v", err)
		}
	}()
	t.Cleanup(func() { <-released })
	return released
}

// TestRunJudgesNoOneAfterAStall stalls the database's writes for longer
// than ReclaimAfter under two Run loops in separate Stores (as separate
// processes): every heartbeat is held up, and whichever loop gets through
// first must not declare the other dead while that one is still on its way
// in. A consumer that really is silent is reclaimed after the stall.
func TestRunJudgesNoOneAfterAStall(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			stores := separateStores(t, b, 3)
			admin := stores[0].Admin()
			if _, err := admin.CreateQueue(ctx, "stall"); err != nil {
				t.Fatal(err)
			}
			opts := &RunOptions{HeartbeatInterval: 100 * time.Millisecond, ReclaimAfter: time.Second, PollInterval: 50 * time.Millisecond}
			var loops []*Consumer
			for _, s := range stores[:2] {
				c, err := s.Consumer(ctx, "stall")
				if err != nil {
					t.Fatal(err)
				}
				loops = append(loops, c)
				stop := runInBackground(t, c, func(context.Context, *Message) error { return nil }, opts)
				t.Cleanup(func() {
					if err := stop(); err != nil {
						t.Errorf("run %s: %v", c.Name(), err)
					}
				})
			}
			for _, c := range loops {
				await(t, 10*time.Second, c.Name()+" polling", func() bool {
					st, err := c.Status(ctx)
					return err == nil && st == WorkerPolling
				})
			}
			// Silent from now on: due for reclaim during the stall.
			dead, err := stores[2].Consumer(ctx, "stall")
			if err != nil {
				t.Fatal(err)
			}
			<-stallWrites(t, stores[2], 2500*time.Millisecond)
			await(t, 30*time.Second, "the silent consumer reclaimed", func() bool {
				st, err := dead.Status(ctx)
				return err == nil && st == WorkerStopped
			})
			for _, c := range loops {
				if st, err := c.Status(ctx); err != nil || st != WorkerPolling {
					t.Errorf("live loop %s is %s, %v after the stall; want polling", c.Name(), st, err)
				}
			}
		})
	}
}

// TestPostgresHeartbeatsWhileReclaimWaits holds a lock on a dead
// consumer's row, so a Run loop's reclaim of it waits: the loop's heartbeats
// go on meanwhile, and the reclaim completes once the lock is gone.
func TestPostgresHeartbeatsWhileReclaimWaits(t *testing.T) {
	t.Parallel()
	s := openBackend(t, "postgres")
	ctx := t.Context()
	admin := s.Admin()
	if err := admin.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateQueue(ctx, "wait"); err != nil {
		t.Fatal(err)
	}
	dead, err := s.Consumer(ctx, "wait")
	if err != nil {
		t.Fatal(err)
	}
	workers := `"` + s.d.schema + `".pgqrs_workers`
	if _, err := s.DB().ExecContext(ctx, `UPDATE `+workers+` SET heartbeat_at = now() - interval '1 hour' WHERE id = $1`, dead.ID()); err != nil {
		t.Fatal(err)
	}
	lock, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	var holder int64
	if err := lock.QueryRowContext(ctx, `SELECT pg_backend_pid() FROM `+workers+` WHERE id = $1 FOR UPDATE`, dead.ID()).Scan(&holder); err != nil {
		t.Fatal(err)
	}

	c, err := s.Consumer(ctx, "wait")
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, c, func(context.Context, *Message) error { return nil },
		&RunOptions{HeartbeatInterval: 100 * time.Millisecond, ReclaimAfter: time.Second, PollInterval: 50 * time.Millisecond})
	await(t, 10*time.Second, "the reclaim waiting for the lock", func() bool {
		var n int
		err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, holder).Scan(&n)
		return err == nil && n > 0
	})
	beat := func() time.Time {
		w, err := admin.GetWorker(ctx, c.ID())
		if err != nil {
			t.Fatal(err)
		}
		return w.HeartbeatAt
	}
	from := beat()
	await(t, 5*time.Second, "heartbeats while the reclaim waits", func() bool {
		return beat().Sub(from) >= 500*time.Millisecond
	})
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	await(t, 10*time.Second, "the dead consumer reclaimed", func() bool {
		st, err := dead.Status(ctx)
		return err == nil && st == WorkerStopped
	})
	if st, err := c.Status(ctx); err != nil || st != WorkerPolling {
		t.Errorf("loop is %s, %v; want polling", st, err)
	}
}
