package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/pgqrs/pgqrs-go"
)

// handles maps the opaque uint64 handles Python holds to Go objects.
var handles = struct {
	sync.Mutex
	next uint64
	m    map[uint64]any
}{m: map[uint64]any{}}

func putHandle(v any) uint64 {
	handles.Lock()
	defer handles.Unlock()
	handles.next++
	handles.m[handles.next] = v
	return handles.next
}

func dropHandle(h uint64) {
	handles.Lock()
	delete(handles.m, h)
	handles.Unlock()
}

// lookup returns the object behind handle h, which must be a T.
func lookup[T any](h uint64, kind string) (T, error) {
	handles.Lock()
	v, ok := handles.m[h]
	handles.Unlock()
	t, isT := v.(T)
	switch {
	case h == 0 || !ok:
		return t, fmt.Errorf("%w: no %s with handle %d (released already?)", pgqrs.ErrInvalidArgument, kind, h)
	case !isT:
		return t, fmt.Errorf("%w: handle %d is not a %s", pgqrs.ErrInvalidArgument, h, kind)
	}
	return t, nil
}

// decode reads an operation's JSON arguments into v; a type mismatch names
// the argument.
func decode(in []byte, v any) error {
	if len(in) == 0 {
		in = []byte("{}")
	}
	if err := json.Unmarshal(in, v); err != nil {
		if te, ok := err.(*json.UnmarshalTypeError); ok {
			field := te.Field
			if field == "" {
				field = "arguments"
			}
			return fmt.Errorf("%w: %s must be %s, not a JSON %s", pgqrs.ErrInvalidArgument, field, goType(te.Type.String()), te.Value)
		}
		return fmt.Errorf("%w: arguments: %v", pgqrs.ErrInvalidArgument, err)
	}
	return nil
}

func goType(t string) string {
	switch {
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "a boolean"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map"):
		return "a dict"
	}
	return t
}
