package pgqrs

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFlowProcessChild is a consumer process of TestFlowAcrossProcesses:
// it drains the queue "limited", printing each handler's execution on the
// wall clock. It does nothing when run on its own.
func TestFlowProcessChild(t *testing.T) {
	s := childStore(t, "PGQRS_FLOW_DSN", "TestFlowAcrossProcesses")
	ctx := context.Background()
	c, err := s.Consumer(ctx, "limited")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // one line at a time on stdout
	err = c.Run(ctx, func(ctx context.Context, m *Message) error {
		start := time.Now()
		time.Sleep(5 * time.Millisecond) // the work: holds the lease while others claim
		end := time.Now()
		mu.Lock()
		fmt.Printf("IV %d %d %d\n", m.ID, start.UnixNano(), end.UnixNano())
		mu.Unlock()
		return nil
	}, &RunOptions{Concurrency: 4, BatchSize: 4, PollInterval: 20 * time.Millisecond})
	t.Fatalf("Run returned %v; it should have been killed", err)
}

// TestFlowAcrossProcesses: three consumer processes, each with more
// handlers than the queue's limit of 4, drain the queue; on the one wall
// clock of the machine no instant has more than 4 executions.
func TestFlowAcrossProcesses(t *testing.T) {
	const limit, total, procs = 4, 150, 3
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			dsn, s := crashStore(t, b)
			ctx := t.Context()
			p, _ := fixture(t, s, "limited")
			if err := s.Admin().SetLimits(ctx, "limited", Limits{MaxInFlight: limit}); err != nil {
				t.Fatal(err)
			}
			payloads := make([]any, total)
			for i := range payloads {
				payloads[i] = i
			}
			if _, err := p.EnqueueBatch(ctx, payloads); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			seen := map[int64]interval{}
			var cmds []*exec.Cmd
			var readers sync.WaitGroup
			for range procs {
				cmd := exec.Command(os.Args[0], "-test.run=^TestFlowProcessChild$", "-test.count=1", "-test.timeout=5m")
				cmd.Env = append(os.Environ(), "PGQRS_FLOW_DSN="+dsn, "PGQRS_CRASH_SCHEMA="+s.d.schema)
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				cmds = append(cmds, cmd)
				readers.Add(1)
				go func() {
					defer readers.Done()
					sc := bufio.NewScanner(out)
					for sc.Scan() {
						f := strings.Fields(sc.Text())
						if len(f) != 4 || f[0] != "IV" {
							continue
						}
						id, _ := strconv.ParseInt(f[1], 10, 64)
						start, _ := strconv.ParseInt(f[2], 10, 64)
						end, _ := strconv.ParseInt(f[3], 10, 64)
						mu.Lock()
						seen[id] = interval{id: id, start: time.Unix(0, start), end: time.Unix(0, end)}
						mu.Unlock()
					}
				}()
			}
			kill := func() {
				for _, cmd := range cmds {
					cmd.Process.Kill()
					cmd.Wait()
				}
				readers.Wait()
			}
			defer kill()
			await(t, 120*time.Second, "the drain by three processes", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(seen) == total
			})
			kill()
			var ivs []interval
			for _, iv := range seen {
				ivs = append(ivs, iv)
			}
			if got := maxOverlap(ivs); got > limit || got < 2 {
				t.Fatalf("at most %d executions overlapped across processes; want 2 to %d", got, limit)
			}
			t.Logf("%d messages, at most %d at once across %d processes (limit %d)", total, maxOverlap(ivs), procs, limit)
		})
	}
}
