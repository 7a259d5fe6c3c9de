// Command workflow runs the durable workflow of docs/workflows.md: list the
// files of a directory, sleep, then zip them. Each step's result is stored,
// so a run that crashes halfway resumes where it was. It uses an embedded
// SQLite database in a temporary directory: no server, no setup.
package main

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pgqrs/pgqrs-go"
	_ "modernc.org/sqlite"
)

// Job is the workflow's input. It is stored as JSON when a run is triggered.
type Job struct {
	Dir string `json:"dir"` // the directory to archive
}

// Result is the workflow's output, stored as JSON when a run succeeds.
type Result struct {
	Path  string `json:"path"` // the zip file
	Files int    `json:"files"`
}

// coolDown is how long a run waits between listing and zipping. It holds no
// worker while it waits, and the wait survives restarts: it could be hours.
const coolDown = time.Second

// archiveFiles is the workflow. Its function runs again from the top after
// a crash or a sleep; completed steps then return their stored results.
var archiveFiles = pgqrs.NewWorkflow("archive_files", func(ctx context.Context, run *pgqrs.Run, job Job) (Result, error) {
	files, err := pgqrs.Step(ctx, run, "list_files", func(ctx context.Context) ([]string, error) {
		return listFiles(job.Dir)
	})
	if err != nil {
		return Result{}, err
	}
	if err := pgqrs.Sleep(ctx, run, "cool_down", coolDown); err != nil {
		return Result{}, err // the run is suspended; it continues after coolDown
	}
	path, err := pgqrs.Step(ctx, run, "zip", func(ctx context.Context) (string, error) {
		return zipFiles(job.Dir, files)
	})
	if err != nil {
		return Result{}, err
	}
	return Result{Path: path, Files: len(files)}, nil
})

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer) (err error) {
	tmp, err := os.MkdirTemp("", "pgqrs-workflow")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	photos := filepath.Join(tmp, "photos")
	if err := os.Mkdir(photos, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"a.jpg", "b.jpg", "c.jpg"} {
		if err := os.WriteFile(filepath.Join(photos, name), []byte("pixels of "+name), 0o644); err != nil {
			return err
		}
	}

	s, err := pgqrs.Open(ctx, "sqlite:"+filepath.Join(tmp, "workflow.db"))
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil { // idempotent
		return err
	}
	if err := archiveFiles.Register(ctx, s); err != nil { // idempotent; creates the queue "archive_files"
		return err
	}

	// A worker: Serve runs triggered runs until its context is cancelled.
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- archiveFiles.Serve(serveCtx, s, &pgqrs.RunOptions{
			Concurrency:  4,
			PollInterval: 100 * time.Millisecond, // how soon a woken run is picked up
		})
	}()
	defer func() { // stop the worker and wait for it: running runs finish or suspend
		stop()
		if serr := <-served; err == nil {
			err = serr
		}
	}()

	id, err := archiveFiles.Trigger(ctx, s, Job{Dir: photos})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "triggered run %d\n", id)

	res, err := archiveFiles.Result(ctx, s, id) // waits for the run to finish
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "archived %d files into %s\n", res.Files, filepath.Base(res.Path))

	info, err := s.Runs().Get(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "run %d: %s in %v\n", info.ID, info.Status, info.FinishedAt.Sub(info.StartedAt).Round(100*time.Millisecond))
	for _, st := range info.Steps {
		fmt.Fprintf(out, "  %d %-10s %s after %d attempt(s): %s\n", st.Position, st.Name, st.Status, st.Attempts, st.Output)
	}
	return nil
}

// listFiles returns the names of the regular files in dir, sorted. A
// missing directory fails the run: the error is not marked transient.
func listFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// zipFiles writes dir's files into dir + ".zip" and returns its path. It may
// run more than once (a crash before its result is stored runs it again),
// so it writes a temporary file and renames it: a second run replaces the
// first's archive instead of adding to a half-written one. Write errors are
// marked transient, so the step is retried with backoff.
func zipFiles(dir string, files []string) (string, error) {
	path := dir + ".zip"
	f, err := os.CreateTemp(filepath.Dir(path), ".zip-*")
	if err != nil {
		return "", pgqrs.Transient(err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	defer f.Close()
	zw := zip.NewWriter(f)
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", err // a file vanished since it was listed: do not retry
		}
		w, err := zw.Create(name)
		if err != nil {
			return "", pgqrs.Transient(err)
		}
		if _, err := w.Write(b); err != nil {
			return "", pgqrs.Transient(err)
		}
	}
	if err := zw.Close(); err != nil {
		return "", pgqrs.Transient(err)
	}
	if err := f.Close(); err != nil {
		return "", pgqrs.Transient(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", pgqrs.Transient(err)
	}
	return path, nil
}
