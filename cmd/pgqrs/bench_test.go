package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pgqrs/pgqrs-go/cmd/pgqrs/internal/bench"
)

// TestBenchSmoke runs every bench scenario on every backend with a tiny
// backlog and checks that the tool works and that its JSON lines and SVG
// files are well formed. It never looks at the numbers.
func TestBenchSmoke(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			var global []string
			switch name {
			case "sqlite":
				global = []string{"--dsn", "sqlite:" + filepath.Join(t.TempDir(), "bench.db")}
			case "postgres":
				// A fresh schema, dropped at the end.
				global = newBackend(t, name).global
			default:
				// sqld is shared and bench only touches its own queues and
				// floor rows: no wipe.
				dsn := needEnv(t, "PGQRS_TEST_TURSO_URL", "libSQL server (sqld)")
				if name == "turso-ws" {
					dsn = "ws" + strings.TrimPrefix(dsn, "http")
				}
				global = []string{"--dsn", dsn}
			}
			svgDir := t.TempDir()
			args := append(slices.Clone(global), "--json", "bench", "--scenario", "all",
				"--backlog", "200", "--consumers", "1,2", "--batch", "1,10", "--concurrency", "2",
				"--duration", "300ms", "--rate", "50", "--poll", "50ms", "--svg", svgDir,
				"--runs", "20", "--workflow-concurrency", "1,4")
			r := runBin(t, "", "", nil, args...)
			if r.code != 0 {
				t.Fatalf("pgqrs %s: exit %d, stderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
			}
			checkBenchJSON(t, r.stdout, name)
			checkBenchSVGs(t, svgDir, name)

			// The same charts drawn again from the JSON lines.
			results := filepath.Join(t.TempDir(), "results.jsonl")
			if err := os.WriteFile(results, []byte(r.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			fromDir := t.TempDir()
			if r := runBin(t, "", "", nil, "bench", "--from", results, "--svg", fromDir); r.code != 0 {
				t.Fatalf("pgqrs bench --from: exit %d, stderr:\n%s", r.code, r.stderr)
			}
			checkBenchSVGs(t, fromDir, name)
		})
	}
}

// checkBenchJSON requires one well-formed result line per scenario run with
// the fields the docs promise.
func checkBenchJSON(t *testing.T, out, backend string) {
	t.Helper()
	count := map[string]int{}
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var r struct {
			Scenario   *string  `json:"scenario"`
			Backend    *string  `json:"backend"`
			Batch      *int     `json:"batch"`
			Consumers  int      `json:"consumers"`
			Messages   *int64   `json:"messages"`
			MsgsPerSec *float64 `json:"msgs_per_sec"`
			Errors     *int64   `json:"errors"`
			FloorRatio *float64 `json:"floor_ratio"`
			Machine    *struct {
				CPUs      int    `json:"cpus"`
				GoVersion string `json:"go_version"`
				Database  string `json:"database"`
			} `json:"machine"`
			Mode      string             `json:"mode"`
			DequeueMs *bench.Percentiles `json:"dequeue_ms"`
			LatencyMs *bench.Percentiles `json:"latency_ms"`
		}
		err := dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("stdout is not JSON lines: %v\n%s", err, out)
		}
		if r.Scenario == nil || r.Backend == nil || r.Batch == nil || r.Messages == nil || r.MsgsPerSec == nil || r.Errors == nil || r.Machine == nil {
			t.Fatalf("result line misses a field: %+v", r)
		}
		if !strings.HasPrefix(*r.Backend, strings.Split(backend, "-")[0]) {
			t.Errorf("backend %q, want %s", *r.Backend, backend)
		}
		if r.Machine.CPUs < 1 || !strings.HasPrefix(r.Machine.GoVersion, "go") || r.Machine.Database == "" {
			t.Errorf("machine info incomplete: %+v", *r.Machine)
		}
		if *r.Messages < 1 || *r.MsgsPerSec <= 0 {
			t.Errorf("%s: %d messages at %v msgs/s", *r.Scenario, *r.Messages, *r.MsgsPerSec)
		}
		switch *r.Scenario {
		case "drain":
			if r.FloorRatio == nil || r.DequeueMs == nil {
				t.Errorf("drain row without floor ratio or dequeue latency: %+v", r)
			}
		case "floor":
			if r.DequeueMs == nil {
				t.Errorf("floor row without dequeue latency")
			}
		case "workflow":
			if r.Mode == "latency" && r.LatencyMs == nil {
				t.Errorf("workflow latency row without latency")
			}
		case "latency", "enqueue":
			if r.LatencyMs == nil {
				t.Errorf("%s row without latency", *r.Scenario)
			}
		}
		count[*r.Scenario]++
	}
	want := map[string]int{"drain": 4, "floor": 4, "drain-run": 2, "drain-steady": 1, "drain-limited": 2, "drain-grouped": 1, "enqueue": 4, "latency": 2, "workflow": 3}
	for scen, n := range want {
		if count[scen] != n {
			t.Errorf("%d %s rows, want %d", count[scen], scen, n)
		}
	}
}

// checkBenchSVGs requires the charts to exist and to parse as XML with an
// svg root element.
func checkBenchSVGs(t *testing.T, dir, backend string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Errorf("%d SVG files, want 4: %v", len(files), files)
	}
	for _, f := range files {
		if !strings.HasPrefix(filepath.Base(f), backend+"-") {
			t.Errorf("%s: name does not start with the backend", f)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := xml.NewDecoder(bytes.NewReader(data))
		root := ""
		for {
			tok, err := dec.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Errorf("%s: not well-formed XML: %v", f, err)
				break
			}
			if se, ok := tok.(xml.StartElement); ok && root == "" {
				root = se.Name.Local
			}
		}
		if root != "svg" {
			t.Errorf("%s: root element %q, want svg", f, root)
		}
	}
}

func TestBenchUsageErrors(t *testing.T) {
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "usage.db")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--backend", "mysql"}, "--backend must be sqlite, postgres or turso"},
		{[]string{"bench", "--backend", "postgres"}, "--backend postgres needs --dsn"},
		{[]string{"bench", "--scenario", "drain,nope"}, `unknown scenario "nope"`},
		{[]string{"bench", "--consumers", "1,0"}, "--consumers wants comma-separated numbers"},
		{[]string{"bench", "--batch", "x"}, "--batch wants comma-separated numbers"},
		{[]string{"bench", "--backlog", "0"}, "--backlog must be at least 1"},
		{[]string{"bench", "--rate", "0"}, "--rate must be a positive number"},
		{[]string{"bench", "--duration", "0s"}, "--duration must be positive"},
	}
	for _, tt := range tests {
		args := append([]string{"--dsn", dsn}, tt.args...)
		checkFailure(t, runBin(t, "", "", nil, args...), 2, tt.want, args)
	}
}
