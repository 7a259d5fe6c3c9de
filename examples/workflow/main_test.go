package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestWorkflowExampleRuns(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		`(?m)^archived 3 files into photos\.zip$`,
		`(?m)^run \d+: SUCCESS in `,
		`(?m)^  0 list_files SUCCESS after 1 attempt\(s\): \["a\.jpg","b\.jpg","c\.jpg"\]$`,
		`(?m)^  1 cool_down  SUCCESS after 1 attempt\(s\): "\d{4}-`,
		`(?m)^  2 zip        SUCCESS after 1 attempt\(s\): ".*photos\.zip"$`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output does not match %s:\n%s", want, out.String())
		}
	}
}

// TestDocsShowThisProgram keeps the complete example in docs/workflows.md
// identical to this file.
func TestDocsShowThisProgram(t *testing.T) {
	doc, err := os.ReadFile("../../docs/workflows.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```go\n"+string(src)+"```") {
		t.Error("docs/workflows.md's complete example differs from examples/workflow/main.go; copy the file into the guide")
	}
}
