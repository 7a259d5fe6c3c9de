package ui_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgqrs/pgqrs-go"
	"github.com/pgqrs/pgqrs-go/ui"
)

// playwrightVersion is the playwright-core the browser test uses, from
// npm; it drives the system chromium and never downloads a browser.
const playwrightVersion = "1.65.1"

// need returns what find found; without it a local run skips and a CI run
// (CI=true) fails.
func need(t *testing.T, what, hint string, find func() (string, error)) string {
	t.Helper()
	v, err := find()
	if err == nil {
		return v
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s: %v (%s)", what, err, hint)
	}
	t.Skipf("%s: %v (%s)", what, err, hint)
	return ""
}

// playwrightDir returns a directory whose node_modules holds
// playwright-core: $PGQRS_PLAYWRIGHT_DIR, else a cache directory, where it
// is installed with npm when missing.
func playwrightDir() (string, error) {
	dir := os.Getenv("PGQRS_PLAYWRIGHT_DIR")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(cache, "pgqrs", "playwright-core-"+playwrightVersion)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err == nil {
		return dir, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("playwright-core is not in %s and there is no npm to install it", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cmd := exec.Command(npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", dir, "playwright-core@"+playwrightVersion)
	cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install playwright-core: %v\n%s", err, out)
	}
	return dir, nil
}

// TestBrowser loads every page in headless chromium against a filled
// database, clicks replay and pause and checks the database, watches the
// overview's counts fall while a consumer drains a queue, checks that no
// hostile payload runs, and saves a screenshot of each page (into
// $PGQRS_SCREENSHOTS when set, e.g. docs/screenshots).
func TestBrowser(t *testing.T) {
	chromium := need(t, "chromium", "apt-get install -y chromium; scripts/test.sh does it as root", func() (string, error) {
		return exec.LookPath(cmpOr(os.Getenv("PGQRS_CHROMIUM"), "/usr/bin/chromium"))
	})
	node := need(t, "node", "apt-get install -y nodejs npm", func() (string, error) { return exec.LookPath("node") })
	pw := need(t, "playwright-core", "scripts/test.sh installs it", playwrightDir)

	s, _ := openStore(t, "sqlite")
	d := seed(t, s)
	ctx := t.Context()
	a := s.Admin()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(prefix+"/", ui.Handler(s, ui.Options{Prefix: prefix, AllowActions: true, Refresh: 300 * time.Millisecond}))
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	shots := os.Getenv("PGQRS_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if shots, err = filepath.Abs(shots); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("testdata/e2e.mjs")
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(rctx, node, script, "http://"+ln.Addr().String()+prefix, shots)
	cmd.Env = append(os.Environ(), "PGQRS_PLAYWRIGHT_DIR="+pw, "PGQRS_CHROMIUM="+chromium, fmt.Sprintf("PGQRS_OK_RUN=%d", d.okRun))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	answer := func() { io.WriteString(stdin, "ok\n") }
	drained := make(chan error, 1)
	passed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		t.Log("e2e: " + line)
		switch line {
		case "step check-replay":
			if m, err := a.QueueMetrics(ctx, "emails"); err != nil || m.Dead != 1 || m.Visible != 3 {
				t.Errorf("after the replay click: %+v, %v; want 1 dead and 3 visible", m, err)
			}
			answer()
		case "step check-pause":
			if m, err := a.QueueMetrics(ctx, "reports"); err != nil || !m.Paused {
				t.Errorf("after the pause click: reports %+v, %v; want paused", m, err)
			}
			answer()
		case "step check-resume":
			if m, err := a.QueueMetrics(ctx, "reports"); err != nil || m.Paused {
				t.Errorf("after Enter on resume: reports %+v, %v; want running", m, err)
			}
			answer()
		case "step drain":
			// A consumer that takes a little while per message, so the
			// page sees the counts between full and empty.
			c, err := s.Consumer(ctx, "payments", pgqrs.WithWorkerName("drainer"))
			if err != nil {
				t.Fatal(err)
			}
			dctx, stop := context.WithCancel(ctx)
			t.Cleanup(stop)
			go func() {
				drained <- c.Run(dctx, func(ctx context.Context, m *pgqrs.Message) error {
					time.Sleep(40 * time.Millisecond) // the work
					return nil
				}, &pgqrs.RunOptions{BatchSize: 1})
			}()
			answer()
		case "pass":
			passed = true
		}
	}
	err = cmd.Wait()
	t.Logf("browser test took %v; its log:\n%s", time.Since(start).Round(time.Millisecond), stderr.String())
	if err != nil || !passed {
		t.Fatalf("node e2e.mjs: %v\n%s", err, stderr.String())
	}
	if m, err := a.QueueMetrics(ctx, "payments"); err != nil || m.Pending != 0 || m.Archived != int64(d.drainCount) {
		t.Errorf("payments after the drain: %+v, %v", m, err)
	}
	for _, name := range []string{"overview", "queue", "dead-letters", "workers", "workflows", "run", "schedules", "not-found"} {
		if fi, err := os.Stat(filepath.Join(shots, name+".png")); err != nil || fi.Size() < 5000 {
			t.Errorf("screenshot %s: %v", name, err)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
