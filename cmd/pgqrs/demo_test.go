package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDemo runs the demo as a new user would: defaults, embedded SQLite.
func TestDemo(t *testing.T) {
	b := newBackend(t, "sqlite")
	start := time.Now()
	out := b.ok("demo")
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("demo took %v; it should take seconds", d)
	}
	for _, want := range []string{
		`3000 messages to queue "demo", 4 consumers`,
		"60 always fail",
		"produced 3000/3000",
		"2940 archived",
		"QUEUE  PENDING",
		"pgqrs dlq list demo",
		"pgqrs metrics",
		"--dsn 'postgres://",
		"200 of 200 runs succeeded, 20 after a step retry",
		"pgqrs workflow show",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\r") {
		t.Errorf("demo rewrote its progress line on a pipe:\n%q", out)
	}
	m := b.metrics("demo")
	if m.Pending != 0 || m.Leased != 0 || m.Archived+m.Dead != 3000 || m.Dead != 60 {
		t.Errorf("after the demo: %+v, want 2940 archived and 60 dead", m)
	}
	b.noLiveWorkers()

	// A second run starts afresh.
	out = b.ok("demo", "--messages", "200")
	if !strings.Contains(out, `deleted 3000 messages left in "demo"`) {
		t.Errorf("second demo run:\n%s", out)
	}
	if diff := cmp.Diff(metrics{Queue: "demo", Archived: 196, Dead: 4}, b.metrics("demo"), counts); diff != "" {
		t.Errorf("metrics after the second run (-want +got):\n%s", diff)
	}
}

// TestDemoBackends runs a short demo with --json on every backend.
func TestDemoBackends(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, name) // the demo installs the schema itself
			var got struct {
				Queue    string  `json:"queue"`
				Messages int64   `json:"messages"`
				Archived int64   `json:"archived"`
				Dead     int64   `json:"dead"`
				Metrics  metrics `json:"metrics"`
			}
			b.json(&got, "demo", "--messages", "300", "--queue", "d1")
			if got.Queue != "d1" || got.Messages != 300 || got.Archived != 294 || got.Dead != 6 {
				t.Errorf("demo --json: %+v", got)
			}
			if diff := cmp.Diff(metrics{Queue: "d1", Archived: 294, Dead: 6}, got.Metrics, counts); diff != "" {
				t.Errorf("demo --json metrics (-want +got):\n%s", diff)
			}
			b.noLiveWorkers()
		})
	}
}

// TestDemoInProcess runs the demo inside the test binary, so that -race
// checks its goroutines (the subprocess binary is built without -race).
func TestDemoInProcess(t *testing.T) {
	var stdout, stderr bytes.Buffer
	c := &cli{
		stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
		getenv: func(string) string { return "" }, stdoutTTY: true,
	}
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "demo.db")
	if code := c.main(t.Context(), []string{"--dsn", dsn, "demo", "--messages", "150", "--workers", "3"}); code != 0 {
		t.Fatalf("demo: exit %d, stderr: %s", code, stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "\rproduced 150/150") || !strings.Contains(out, "147 archived") {
		t.Errorf("demo on a terminal: want a progress line rewritten with \\r:\n%q", out)
	}
}

// TestDemoInterrupt stops a long demo with SIGINT: it must shut its workers
// down, say so, and exit 1.
func TestDemoInterrupt(t *testing.T) {
	b := newBackend(t, "sqlite")
	cmd := exec.CommandContext(t.Context(), bin, append(b.global, "demo", "--messages", "200000")...)
	stdout, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once the demo is under way.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, err := os.ReadFile(stdout.Name())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), "produced") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo shows no progress: %q", out)
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || ee.Sys().(syscall.WaitStatus).Signaled() {
		t.Errorf("interrupted demo: %v, want exit status 1", err)
	}
	if got := stderr.String(); !strings.HasPrefix(got, "pgqrs: interrupted") || strings.Count(got, "\n") != 1 {
		t.Errorf("interrupted demo: stderr %q", got)
	}
	b.noLiveWorkers()
	if m := b.metrics("demo"); m.Leased != 0 {
		t.Errorf("interrupted demo left leased messages: %+v", m)
	}
}

// TestDemoHintsUnderGoRun: run as the README says (go run ./cmd/pgqrs
// demo), the demo's hints give commands that work without an installed
// binary, and say how to install one.
func TestDemoHintsUnderGoRun(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "demo.db")
	cmd := exec.CommandContext(t.Context(), "go", "run", "./cmd/pgqrs", "--dsn", dsn, "demo", "--messages", "100")
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go run ./cmd/pgqrs demo: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"go run ./cmd/pgqrs dlq list demo", "go run ./cmd/pgqrs workflow show", "go install github.com/pgqrs/pgqrs-go/cmd/pgqrs@latest"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo under go run lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\n  pgqrs ") {
		t.Errorf("demo under go run suggests a bare pgqrs command:\n%s", out)
	}
}
