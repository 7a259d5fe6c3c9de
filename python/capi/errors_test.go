package main

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"testing"

	"github.com/pgqrs/pgqrs-go"
)

// TestEverySentinelMapped fails when pgqrs.go gains a sentinel error that
// errorCodes (and so the Python exception classes) does not know.
func TestEverySentinelMapped(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../../pgqrs.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, c := range errorCodes {
		known[c.err.Error()] = true
	}
	n := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.VAR {
			continue
		}
		for _, sp := range g.Specs {
			for i, name := range sp.(*ast.ValueSpec).Names {
				call, ok := sp.(*ast.ValueSpec).Values[i].(*ast.CallExpr)
				if !ok || len(name.Name) < 4 || name.Name[:3] != "Err" {
					continue
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok {
					continue
				}
				n++
				if !known[lit.Value[1:len(lit.Value)-1]] {
					t.Errorf("pgqrs.%s has no entry in errorCodes", name.Name)
				}
			}
		}
	}
	if n < 30 {
		t.Fatalf("found only %d sentinels in pgqrs.go: the parse is broken", n)
	}
	if got := docOf(pgqrs.ErrLeaseLost).Code; got != "LeaseLost" {
		t.Errorf("docOf(ErrLeaseLost).Code = %q", got)
	}
	if got := docOf(errors.New("x")).Code; got != codeOther {
		t.Errorf("docOf(plain error).Code = %q", got)
	}
}
