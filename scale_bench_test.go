package pgqrs

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	ossignal "os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// envInt reads a positive integer from name, or def.
func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// BenchmarkThousandConsumers drains one queue with PGQRS_SCALE_PROCS
// processes (default 10) of PGQRS_SCALE_HANDLERS concurrent handlers each
// (default 100) through PgBouncer in transaction pooling mode (20 server
// connections, as scripts/services.sh starts it), PGQRS_SCALE_MESSAGES
// messages (default 200,000). Each handler waits 2 ms, as for a call to
// another service. It fails on any error a consumer process logs, and unless
// every message was handled exactly once; it reports msgs/s. Run it with
//
//	go test -run '^$' -bench ThousandConsumers -benchtime 1x .
//
// (make services-up, source .testenv/env first).
func BenchmarkThousandConsumers(b *testing.B) {
	bouncer := needEnv(b, "PGQRS_TEST_PGBOUNCER_DSN", "PgBouncer")
	procs := envInt(b, "PGQRS_SCALE_PROCS", 10)
	handlers := envInt(b, "PGQRS_SCALE_HANDLERS", 100)
	total := envInt(b, "PGQRS_SCALE_MESSAGES", 200_000)
	s := benchStore(b, "pgbouncer")
	ctx := context.Background()
	for range b.N {
		queue, p := benchQueue(b, s, "thousand")
		for i := 0; i < total; i += 1000 {
			batch := make([]any, min(1000, total-i))
			for j := range batch {
				batch[j] = i + j
			}
			if _, err := p.EnqueueBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		dir := b.TempDir()
		b.StartTimer()
		start := time.Now()
		cmds := make([]*exec.Cmd, procs)
		logs := make([]*strings.Builder, procs)
		var wg sync.WaitGroup
		for i := range cmds {
			cmd := exec.Command(os.Args[0], "-test.run=^TestScaleChild$", "-test.count=1", "-test.timeout=30m")
			cmd.Env = append(os.Environ(), "PGQRS_SCALE_DSN="+bouncer, "PGQRS_CRASH_SCHEMA="+s.d.schema,
				"PGQRS_SCALE_QUEUE="+queue, "PGQRS_SCALE_OUT="+filepath.Join(dir, strconv.Itoa(i)),
				"PGQRS_SCALE_HANDLERS="+strconv.Itoa(handlers))
			logs[i] = &strings.Builder{}
			cmd.Stderr = logs[i]
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			cmds[i] = cmd
			wg.Go(func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					if strings.Contains(sc.Text(), "ERROR") || strings.Contains(sc.Text(), "FAIL") {
						logs[i].WriteString(sc.Text() + "\n")
					}
				}
			})
		}
		deadline := time.Now().Add(20 * time.Minute)
		for {
			m, err := s.Admin().QueueMetrics(ctx, queue)
			if err != nil {
				b.Fatal(err)
			}
			if m.Pending+m.Leased == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("not drained after 20 minutes: %+v", m)
			}
			time.Sleep(100 * time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		for _, cmd := range cmds {
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
		wg.Wait()
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				b.Errorf("consumer process %d: %v\n%s", i, err, logs[i])
			} else if strings.Contains(logs[i].String(), "ERROR") {
				b.Errorf("consumer process %d logged errors:\n%s", i, logs[i])
			}
		}
		seen := make([]int, total)
		for i := range cmds {
			data, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(i)))
			if err != nil {
				b.Fatal(err)
			}
			for f := range strings.FieldsSeq(string(data)) {
				n, err := strconv.Atoi(f)
				if err != nil || n < 0 || n >= total {
					b.Fatalf("consumer process %d handled payload %q", i, f)
				}
				seen[n]++
			}
		}
		lost, doubled := 0, 0
		for _, c := range seen {
			switch {
			case c == 0:
				lost++
			case c > 1:
				doubled++
			}
		}
		if lost+doubled > 0 {
			b.Fatalf("%d messages never handled, %d handled more than once", lost, doubled)
		}
		b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
		b.ReportMetric(float64(procs*handlers), "handlers")
	}
}

// TestScaleChild is one consumer process of BenchmarkThousandConsumers: it
// drains PGQRS_SCALE_QUEUE until SIGTERM, then writes the payloads it
// handled to PGQRS_SCALE_OUT. It does nothing when run on its own.
func TestScaleChild(t *testing.T) {
	s := childStore(t, "PGQRS_SCALE_DSN", "BenchmarkThousandConsumers")
	defer s.Close()
	ctx, stop := ossignal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c, err := s.Consumer(ctx, os.Getenv("PGQRS_SCALE_QUEUE"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var handled []string
	err = c.Run(ctx, func(ctx context.Context, m *Message) error {
		time.Sleep(2 * time.Millisecond) // a call to another service
		mu.Lock()
		handled = append(handled, string(m.Payload))
		mu.Unlock()
		return nil
	}, &RunOptions{Concurrency: envInt(t, "PGQRS_SCALE_HANDLERS", 100), BatchSize: 50, VisibilityTimeout: 5 * time.Minute})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := os.WriteFile(os.Getenv("PGQRS_SCALE_OUT"), []byte(strings.Join(handled, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	fmt.Println("handled", len(handled))
}
