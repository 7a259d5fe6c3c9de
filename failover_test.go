package pgqrs

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pgBin is where the test clusters' binaries are (scripts/services.sh
// installs them).
const pgBin = "/usr/lib/postgresql/15/bin"

// pgNode is one PostgreSQL server of a test's own, in dir, on port.
type pgNode struct {
	t    *testing.T
	dir  string
	port int
}

// asPostgres runs a PostgreSQL binary, as the postgres OS user when the test
// runs as root (initdb and postgres refuse root).
func asPostgres(t *testing.T, name string, args ...string) {
	t.Helper()
	path := filepath.Join(pgBin, name)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// failoverRoot makes a directory the postgres OS user can write.
func failoverRoot(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBin, "initdb")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL 15 binaries are missing from %s (make test installs them)", pgBin)
		}
		t.Skipf("PostgreSQL 15 binaries are missing from %s (make test installs them)", pgBin)
	}
	dir, err := os.MkdirTemp("", "pgqrs-failover-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("as root the clusters run as the postgres OS user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (n *pgNode) appendConf(lines ...string) {
	n.t.Helper()
	f, err := os.OpenFile(filepath.Join(n.dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n" + strings.Join(lines, "\n") + "\n"); err != nil {
		n.t.Fatal(err)
	}
}

func (n *pgNode) start() {
	n.t.Helper()
	asPostgres(n.t, "pg_ctl", "-D", n.dir, "-l", n.dir+".log", "-w", "-t", "60", "start")
}

func (n *pgNode) stop(mode string) {
	n.t.Helper()
	asPostgres(n.t, "pg_ctl", "-D", n.dir, "-m", mode, "-w", "-t", "60", "stop")
}

func (n *pgNode) running() bool {
	_, err := os.Stat(filepath.Join(n.dir, "postmaster.pid"))
	return err == nil
}

// TestPostgresFailover promotes a synchronous standby while producers and a
// Run loop work through a multi-host DSN: after the primary dies (stopped
// with -m immediate, as a crash) and the standby is promoted, both carry on
// against the new primary, every enqueue that returned nil is handled (the
// synchronous standby had it before the commit returned), and a Run loop
// with an hour-long poll interval is woken on the new primary, by its
// re-established LISTEN connection or its catch-up claim after reconnecting.
func TestPostgresFailover(t *testing.T) {
	t.Parallel()
	root := failoverRoot(t)
	primary := &pgNode{t: t, dir: filepath.Join(root, "primary"), port: freePort(t)}
	standby := &pgNode{t: t, dir: filepath.Join(root, "standby"), port: freePort(t)}
	asPostgres(t, "initdb", "-D", primary.dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	primary.appendConf("listen_addresses = '127.0.0.1'", fmt.Sprintf("port = %d", primary.port),
		"unix_socket_directories = '"+root+"'", "wal_level = replica", "max_wal_senders = 4",
		"synchronous_standby_names = 'standby1'", "synchronous_commit = on")
	if err := os.WriteFile(filepath.Join(primary.dir, "pg_hba.conf"),
		[]byte("local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost replication postgres 127.0.0.1/32 trust\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres:", filepath.Join(primary.dir, "pg_hba.conf")).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	primary.start()
	t.Cleanup(func() {
		for _, n := range []*pgNode{primary, standby} {
			if n.running() {
				n.stop("immediate")
			}
		}
	})
	asPostgres(t, "pg_basebackup", "-d", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=standby1", primary.port),
		"-D", standby.dir, "-R", "-X", "stream", "--no-sync")
	// The copy of the primary's configuration would make the promoted
	// standby wait for a synchronous standby of its own at every commit,
	// for ever: with one standby, the new primary runs without.
	standby.appendConf(fmt.Sprintf("port = %d", standby.port), "synchronous_standby_names = ''")
	standby.start()

	ctx := t.Context()
	// target_session_attrs: a connection goes to whichever host takes writes.
	dsn := fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres sslmode=disable connect_timeout=2 target_session_attrs=read-write",
		primary.port, standby.port)
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	await(t, 30*time.Second, "the standby to be synchronous", func() bool {
		var state string
		err := s.DB().QueryRowContext(ctx, `SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'`).Scan(&state)
		return err == nil && state == "sync"
	})
	if err := s.Admin().Install(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"failover", "wake"} {
		if _, err := s.Admin().CreateQueue(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	// Consumers on a Store of their own: the drain, and an idle loop that only
	// a wakeup can reach.
	cs, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	var mu sync.Mutex
	handled := map[int]bool{}
	var woken atomic.Bool
	runCtx, stopRuns := context.WithCancel(ctx)
	var runs sync.WaitGroup
	defer func() { stopRuns(); runs.Wait() }()
	startRun := func(queue string, poll time.Duration, h Handler) {
		c, err := cs.Consumer(ctx, queue)
		if err != nil {
			t.Fatal(err)
		}
		runs.Go(func() {
			err := c.Run(runCtx, h, &RunOptions{Concurrency: 4, PollInterval: poll, VisibilityTimeout: 2 * time.Second,
				HeartbeatInterval: 200 * time.Millisecond, ReclaimAfter: -1, Backoff: func(int) time.Duration { return 100 * time.Millisecond }})
			if err != nil && runCtx.Err() == nil {
				t.Errorf("Run %s: %v", queue, err)
			}
		})
	}
	startRun("failover", 100*time.Millisecond, func(_ context.Context, m *Message) error {
		var n int
		if err := json.Unmarshal(m.Payload, &n); err != nil {
			return Permanent(err)
		}
		mu.Lock()
		handled[n] = true
		mu.Unlock()
		return nil
	})
	startRun("wake", time.Hour, func(context.Context, *Message) error { woken.Store(true); return nil })

	// One producer enqueues 0, 1, 2, … and keeps those the database
	// acknowledged; a failed enqueue (the outage) is tried again.
	p, err := s.Producer(ctx, "failover")
	if err != nil {
		t.Fatal(err)
	}
	var acked []int
	enqueueUntil := func(n int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for i := len(acked); i < n; {
			if _, err := p.Enqueue(ctx, i); err != nil {
				if time.Now().After(deadline) {
					t.Fatalf("enqueue %d still failing after a minute: %v", i, err)
				}
				time.Sleep(50 * time.Millisecond) // the outage: try again shortly
				continue
			}
			acked = append(acked, i)
			i++
		}
	}
	enqueueUntil(300)

	// The primary crashes; the standby is promoted.
	primary.stop("immediate")
	asPostgres(t, "pg_ctl", "-D", standby.dir, "-w", "-t", "60", "promote")
	enqueueUntil(600)

	await(t, 60*time.Second, "every acknowledged message handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range acked {
			if !handled[n] {
				return false
			}
		}
		return true
	})
	// The idle loop polls hourly: only its wakeup (or the catch-up claim
	// when its LISTEN connection came back) can find this message.
	wp, err := s.Producer(ctx, "wake")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wp.Enqueue(ctx, "after the failover"); err != nil {
		t.Fatal(err)
	}
	await(t, 30*time.Second, "the idle loop woken on the new primary", woken.Load)
	var recovery bool
	if err := s.DB().QueryRowContext(ctx, `SELECT pg_is_in_recovery()`).Scan(&recovery); err != nil || recovery {
		t.Errorf("the store's connection is on a server in recovery (%v, %v): not the promoted standby", recovery, err)
	}
}
