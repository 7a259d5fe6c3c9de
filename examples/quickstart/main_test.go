package main

import (
	"path/filepath"
	"testing"
)

func TestQuickstartRuns(t *testing.T) {
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "q.db")
	for range 2 { // a second run finds the schema and queue in place
		if err := run(t.Context(), dsn); err != nil {
			t.Fatal(err)
		}
	}
}
