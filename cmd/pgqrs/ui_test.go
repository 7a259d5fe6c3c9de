package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serveUI starts "pgqrs ui" with args and returns the URL it prints and
// its stderr so far; the server is stopped with SIGINT at the end, and
// must exit 0.
func serveUI(t *testing.T, global []string, args ...string) (string, *syncBuffer) {
	t.Helper()
	// Not t.Context(): it ends before the cleanup that stops the server.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, bin, append(append(append([]string{}, global...), "ui"), args...)...)
	stdout, _ := cmd.StdoutPipe()
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer cancel()
		_ = cmd.Process.Signal(syscall.SIGINT)
		go io.Copy(io.Discard, stdout)
		if err := cmd.Wait(); err != nil {
			t.Errorf("pgqrs ui after SIGINT: %v\n%s", err, stderr)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("pgqrs ui printed no address: %v\n%s", err, stderr)
	}
	u := regexp.MustCompile(`http://\S+/`).FindString(line)
	if u == "" {
		t.Fatalf("no URL in %q", line)
	}
	return u, stderr
}

// syncBuffer is a strings.Builder safe to read while exec writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestUI(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("queue", "create", "jobs")
		u, stderr := serveUI(t, b.global, "--addr", "127.0.0.1:0")
		if !strings.HasPrefix(u, "http://127.0.0.1:") {
			t.Errorf("URL %q", u)
		}
		st, body := get(t, u)
		if st != 200 || !strings.Contains(body, "jobs") || !strings.Contains(body, "read-only") {
			t.Errorf("GET %s: %d\n%s", u, st, body)
		}
		for _, g := range b.global {
			if strings.Contains(g, "://") && strings.Contains(body, strings.SplitN(strings.SplitN(g, "://", 2)[1], "/", 2)[0]) {
				t.Errorf("the page shows the database address of %q", g)
			}
		}
		if st, _ := get(t, u+"api/queue?name=nope"); st != 404 {
			t.Errorf("unknown queue: %d", st)
		}
		if stderr.String() != "" {
			t.Errorf("stderr: %s", stderr)
		}
	})
}

func TestUIFlags(t *testing.T) {
	global := []string{"--dsn", "sqlite:" + t.TempDir() + "/ui.db"}
	runBin(t, "", "", nil, append(global, "install")...)
	for _, addr := range []string{"0.0.0.0:0", ":0", "example.com:80"} {
		r := runBin(t, "", "", nil, append(global, "ui", "--addr", addr)...)
		if r.code != 2 || !strings.Contains(r.stderr, "--allow-remote") {
			t.Errorf("ui --addr %s: exit %d, stderr %q; want 2 naming --allow-remote", addr, r.code, r.stderr)
		}
	}
	u, stderr := serveUI(t, global, "--addr", "0.0.0.0:0", "--allow-remote", "--allow-actions", "--prefix", "/ops")
	// The warning comes before the address; exec copies stderr on its own.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "actions ENABLED") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "WARNING") || !strings.Contains(stderr.String(), "actions ENABLED") {
		t.Errorf("no warning for a non-loopback address: %q", stderr)
	}
	if !strings.HasSuffix(u, "/ops/") {
		t.Errorf("URL %q lacks the prefix", u)
	}
	u = strings.Replace(u, "0.0.0.0", "127.0.0.1", 1)
	u = strings.Replace(u, "[::]", "127.0.0.1", 1)
	st, body := get(t, u)
	if st != 200 || !strings.Contains(body, "actions on") || !strings.Contains(body, `href="/ops/static/app.css"`) {
		t.Errorf("GET %s: %d\n%s", u, st, body)
	}
}
