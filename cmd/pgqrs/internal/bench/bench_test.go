package bench

import "testing"

func TestBackendOf(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://u@h/db":                "postgres",
		"host=/tmp user=u dbname=db":       "postgres",
		"sqlite:app.db":                    "sqlite",
		"http://127.0.0.1:8080":            "turso",
		"nonsense":                         "",
		"http://h/?x=host=/tmp":            "turso",
		"sqlite:/tmp/a=b.db":               "sqlite",
		"mysql://u:p@h/db?charset=utf8mb4": "",
	} {
		if got := backendOf(dsn); got != want {
			t.Errorf("backendOf(%q) = %q, want %q", dsn, got, want)
		}
	}
}
