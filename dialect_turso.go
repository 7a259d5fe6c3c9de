package pgqrs

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// newTursoDialect returns the Turso / libSQL dialect: SQLite's statements,
// sent to a libSQL server (sqld) over HTTP or WebSocket. The server reports
// errors as text without codes, so classification matches message text, and
// only here.
func newTursoDialect() *dialect {
	d := newSQLiteDialect()
	d.name = Turso
	d.driver, d.driverImport = "libsql", "github.com/tursodatabase/libsql-client-go/libsql"
	// libsql:// and http(s):// speak HTTP to the server, ws(s):// WebSocket.
	d.schemes = []string{"libsql", "http", "https", "ws", "wss"}
	d.readDSN = tursoDSN
	// sqld is SQLite (3.45): the same schema, from the same files, so the two
	// can never drift apart.
	d.migrations = "sqlite"
	// The server parses every statement anyway, and a prepared statement
	// would tie itself to HTTP streams that expire.
	d.prepare = false
	// sqld can stall writes under load; a deadline turns a stall into an error.
	d.callTimeout = 30 * time.Second
	// libSQL's WebSocket dial ignores its context (it waits up to 120 s).
	d.boundConnect = true
	d.isUnique = func(err error) bool { return tursoErr(err, "UNIQUE constraint failed") }
	d.isForeignKey = func(err error) bool { return tursoErr(err, "FOREIGN KEY constraint failed") }
	// "database is locked" means the statement did not apply: safe to retry.
	d.isBusy = func(err error) bool { return tursoErr(err, "database is locked", "SQLITE_BUSY") }
	// sqld closes WebSockets without answering the close handshake.
	d.isCloseNoise = func(err error) bool { return tursoErr(err, "failed to close WebSocket") }
	// A refused token: HTTP 401 over HTTP, a failed hello over WebSocket.
	d.isAuthFailed = func(err error) bool { return tursoErr(err, "error code 401", "Authentication failed") }
	return d
}

func tursoErr(err error, texts ...string) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, t := range texts {
		if strings.Contains(msg, t) {
			return true
		}
	}
	return false
}

// tursoDSN checks that a libSQL URL parses and hands it to the driver as it
// is (the driver reads authToken and the transport from it).
func tursoDSN(dsn, _, _ string) (dsnInfo, error) {
	info := dsnInfo{shown: redactDSN(dsn), secrets: dsnSecrets(dsn)}
	if _, err := url.Parse(dsn); err != nil {
		return dsnInfo{}, fmt.Errorf("%w: %s: %s", ErrInvalidDSN, info.shown, urlProblem(err))
	}
	info.dialect, info.driver, info.source = Turso, "libsql", dsn
	return info, nil
}
