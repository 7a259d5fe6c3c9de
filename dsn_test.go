package pgqrs

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"unicode"

	"github.com/lib/pq"
)

// TestOpenHidesSecrets opens DSNs of every shape that once leaked their
// password: those that do not parse are ErrInvalidDSN, those that parse but
// reach nobody ErrUnreachable, and no error shows the secret.
func TestOpenHidesSecrets(t *testing.T) {
	t.Parallel()
	const pw = "SECRETPW"
	for _, tc := range []struct {
		dsn  string
		want error
		show string // the error shows this
	}{
		{"postgres://alice:" + pw + "@/app?host=/nonexistent", ErrUnreachable, "postgres://alice:***@/app?…"},
		{"postgres://u:" + pw + "@127.0.0.1:notaport/db", ErrInvalidDSN, "invalid port"},
		{"postgres://u:" + pw + "%zz@127.0.0.1/db", ErrInvalidDSN, "% escape"},
		{"postgres://u:%zz" + pw + "@127.0.0.1/db", ErrInvalidDSN, "% escape"},
		{"postgres://u:" + pw + "@[::1/db", ErrInvalidDSN, "unclosed ["},
		{"postgres://u:" + pw + "@127.0.0.1:1/db?sslmode=bogus", ErrInvalidDSN, `wrong value for "sslmode"`},
		{"postgres://u:" + pw + "@127.0.0.1:1/db?connect_timeout=" + pw, ErrInvalidDSN, `wrong value for "connect_timeout"`},
		{"postgres://u:pa/ss" + pw + "@127.0.0.1:1/db", ErrInvalidDSN, "postgres://…: cannot parse URL: invalid port"},
		{"postgres://u@127.0.0.1:1/db?sslmode=disable&password=" + pw, ErrUnreachable, "postgres://u@127.0.0.1:1/db?…"},
		{"host=/nonexistent user=x password=" + pw + " dbname=z", ErrUnreachable, "host=/nonexistent port=5432 dbname=z user=x"},
		{"host=/nonexistent password='" + pw + " with spaces' dbname=z", ErrUnreachable, "host=/nonexistent"},
		{"host=/nonexistent password='" + pw, ErrInvalidDSN, "unterminated quoted string"},
		{"host=/nonexistent password=" + pw + " junk", ErrInvalidDSN, "(key=value DSN)"},
		{"host=/nonexistent password=" + pw + `\`, ErrInvalidDSN, "backslash"},
		{"password=" + pw, ErrInvalidDSN, ""}, // no host: localhost:5432 may answer; see below
		{"libsql://[::1?authToken=" + pw, ErrInvalidDSN, "libsql://[::1?…"},
		{"http://127.0.0.1:1?authToken=" + pw, ErrUnreachable, "http://127.0.0.1:1?…"},
		{"ws://127.0.0.1:1/?authToken=" + pw, ErrUnreachable, "ws://127.0.0.1:1/?…"},
		{pw, ErrInvalidDSN, "no scheme"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 5e9)
		s, err := Open(ctx, tc.dsn)
		cancel()
		if s != nil {
			s.Close()
		}
		if err == nil {
			if tc.show == "" {
				continue // something answered on localhost:5432
			}
			t.Errorf("Open(%q) succeeded", tc.dsn)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("Open(%q) shows the secret: %v", tc.dsn, err)
		}
		if tc.show == "" {
			continue
		}
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.show) {
			t.Errorf("Open(%q) = %v; want %v showing %q", tc.dsn, err, tc.want, tc.show)
		}
	}
	// Starting with "postgres:" but no "//": lib/pq reads it as key=value.
	_, err := Open(t.Context(), "postgres:u:"+pw+"@h")
	wantErr(t, err, ErrInvalidDSN)
	if strings.Contains(err.Error(), pw) {
		t.Errorf("shows the secret: %v", err)
	}
}

// TestOpenKeyValueDSN: a Postgres DSN in libpq's key=value form works.
func TestOpenKeyValueDSN(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(needEnv(t, "PGQRS_TEST_POSTGRES_DSN", "PostgreSQL server"))
	if err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable", u.Hostname(), u.Port(), u.User.Username(), strings.TrimPrefix(u.Path, "/"))
	s, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open(%q): %v", dsn, err)
	}
	defer s.Close()
	if s.Dialect() != Postgres {
		t.Errorf("dialect %s, want postgres", s.Dialect())
	}
}

// FuzzRedactDSN builds DSNs of every shape around a secret (a password, a
// token) and checks that neither what parseDSN says about a DSN, nor a
// driver error quoting the secret after redaction, ever shows the secret.
// Its seeds run in every go test run; go test -fuzz FuzzRedactDSN explores.
func FuzzRedactDSN(f *testing.F) {
	for shape := range dsnShapes {
		for _, seed := range [][3]string{
			{"alice", "SECRETPW", "127.0.0.1:5432"},
			{"u", "SECRETPW", "127.0.0.1:notaport"},
			{"u", "SEC%zzRETPW", "db"},
			{"u", "SECRETPW", "[::1"},
			{"0", "00000000", ""},
			{"app", "p@ss:w/rd?#&=' \\x", "db.example.com"},
			{"", "eyJhbGciOiJFZERTQSJ9.eyJhIjoicncifQ.c2lnbmF0dXJl", "db.turso.io"},
		} {
			f.Add(uint8(shape), seed[0], seed[1], seed[2])
		}
	}
	f.Fuzz(func(t *testing.T, shape uint8, user, secret, host string) {
		sh := dsnShapes[int(shape)%len(dsnShapes)]
		dsn := sh.dsn(user, secret, host)
		// The DSN with a stand-in for the secret (empty, it would change
		// how "password= host=x" reads).
		skeleton := sh.dsn(user, "Zq9stand-in", host)
		if sh.raw && strings.ContainsAny(user, ":@/?#") {
			return // a raw user name with URL delimiters moves where the password is
		}
		if sh.raw && strings.Contains(dsn, "="+secret) && strings.ContainsAny(secret, "&;#") {
			return // a raw query value with delimiters in it is not one value
		}
		if strings.Contains(dsn, "password="+secret+" ") && (strings.ContainsAny(secret, `'\`) || strings.IndexFunc(secret, unicode.IsSpace) >= 0) {
			return // nor an unquoted key=value value with spaces, quotes or backslashes
		}
		// A secret that is also part of the rest of the DSN (a user name,
		// "postgres") cannot be told apart; too short, it is everywhere.
		secrets := []string{secret}
		if dec, err := url.PathUnescape(secret); err == nil && sh.raw {
			secrets = append(secrets, dec) // what the driver will decode it to
		}
		if sh.keyValue {
			// lib/pq reads key=value DSNs as runes: what it knows of an
			// invalid byte is U+FFFD.
			secrets[0] = string([]rune(secret))
		}
		// What is shown of the DSN without its secret (the other parts as
		// lib/pq decodes them, pgqrs's own words) is no leak.
		public := strings.Join(append(dsnShown(skeleton), skeleton), "\n")
		var check []string
		for _, s := range secrets {
			if len(s) >= 4 && !strings.Contains(public, s) {
				check = append(check, s)
			}
		}
		if len(check) == 0 {
			return
		}
		shown := dsnShown(dsn)
		if info, err := parseDSN(dsn); err == nil {
			// What a driver might say: any of the credentials it read from
			// the DSN (which hold the secret where it landed where a
			// credential goes).
			shown = append(shown, redactErr(errors.New("driver: "+strings.Join(driverCredentials(dsn), " | ")), info.secrets))
		}
		for _, out := range shown {
			for _, s := range check {
				if strings.Contains(out, s) {
					t.Fatalf("DSN %q: %q shows the secret %q", dsn, out, s)
				}
			}
		}
	})
}

// driverCredentials are what the drivers read from dsn as a password, a
// token or, on Postgres, a user name (a server quotes it back; in
// "user= password=x" it is "password=x").
func driverCredentials(dsn string) []string {
	if cfg, err := pq.NewConfig(dsn); err == nil && !strings.Contains(dsn, "://") {
		return []string{cfg.Password, cfg.User}
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return nil
	}
	pw, _ := u.User.Password()
	creds := []string{pw}
	for k, vs := range u.Query() {
		if isCredentialKey(k) {
			creds = append(creds, vs...)
		}
	}
	return creds
}

// dsnShown is what pgqrs says about dsn: redactDSN, and what parseDSN
// reports (its error, or how errors will show the DSN).
func dsnShown(dsn string) []string {
	shown := []string{redactDSN(dsn)}
	if info, err := parseDSN(dsn); err != nil {
		shown = append(shown, err.Error())
	} else {
		shown = append(shown, info.shown)
	}
	return shown
}

// dsnShapes place a user, a secret and a host into the DSN shapes users
// write, the secret sometimes escaped, sometimes raw (then a driver sees it
// %-decoded).
var dsnShapes = []struct {
	raw, keyValue bool
	dsn           func(user, secret, host string) string
}{
	{true, false, func(u, s, h string) string { return "postgres://" + u + ":" + s + "@" + h + "/app?sslmode=disable" }},
	{false, false, func(u, s, h string) string { return "postgres://" + url.UserPassword(u, s).String() + "@" + h + "/app" }},
	{true, false, func(u, s, h string) string { return "postgresql://" + u + ":" + s + "@/app?host=" + h }},
	{true, false, func(u, s, h string) string { return "postgres://" + u + ":" + s + "@" + h }},
	{false, false, func(u, s, h string) string {
		return "postgres://" + u + "@" + h + "/app?password=" + url.QueryEscape(s)
	}},
	{true, false, func(u, s, h string) string { return "postgres://" + u + "@" + h + "/app?password=" + s }},
	{false, true, func(u, s, h string) string {
		q := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
		return "host='" + q.Replace(h) + "' user='" + q.Replace(u) + "' password='" + q.Replace(s) + "' dbname=app"
	}},
	{false, true, func(u, s, h string) string { return "host=" + h + " user=" + u + " password=" + s + " dbname=app" }},
	{false, true, func(u, s, h string) string { return "password=" + s + " host=" + h }},
	{true, false, func(u, s, h string) string { return "libsql://" + h + "?authToken=" + s }},
	{false, false, func(u, s, h string) string { return "https://" + h + "/?tls=1&authToken=" + url.QueryEscape(s) }},
	{true, false, func(u, s, h string) string { return "wss://" + h + "?authToken=" + s + "&x=" + u }},
	{true, false, func(u, s, h string) string { return "http://" + u + ":" + s + "@" + h }},
}

// TestOpenAuthFailedPostgres: a refused login is ErrAuthFailed, not
// ErrUnreachable, and the error never shows the password. The test cluster
// (scripts/services.sh) makes roles other than postgres log in over TCP
// with scram-sha-256.
func TestOpenAuthFailedPostgres(t *testing.T) {
	t.Parallel()
	admin := needEnv(t, "PGQRS_TEST_POSTGRES_DSN", "PostgreSQL server")
	s, err := Open(t.Context(), admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // after the roles are dropped
	const pw = "Corr3ct-horse-battery"
	role, nologin := fmt.Sprintf("pgqrs_auth_%d", os.Getpid()), fmt.Sprintf("pgqrs_nologin_%d", os.Getpid())
	for _, stmt := range []string{
		`CREATE ROLE ` + role + ` LOGIN PASSWORD '` + pw + `'`,
		`CREATE ROLE ` + nologin + ` NOLOGIN PASSWORD '` + pw + `'`,
	} {
		if _, err := s.DB().Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, r := range []string{role, nologin} {
			if _, err := s.DB().Exec(`DROP ROLE IF EXISTS ` + r); err != nil {
				t.Errorf("drop role %s: %v", r, err)
			}
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	as := func(user, password string) string {
		v := *u
		v.User = url.UserPassword(user, password)
		return v.String()
	}
	// The right password works, so the cluster does check passwords.
	ok, err := Open(t.Context(), as(role, pw))
	if err != nil {
		t.Fatalf("open with the right password: %v", err)
	}
	ok.Close()
	for _, tc := range []struct {
		name, dsn, secret, state string
	}{
		{"wrong password", as(role, "Wr0ng-"+pw), "Wr0ng-" + pw, "28P01"},
		{"role without login", as(nologin, pw), pw, "28000"},
		{"key=value", fmt.Sprintf("host=%s port=%s user=%s password='Wr0ng %s' dbname=postgres sslmode=disable", u.Hostname(), u.Port(), role, pw), "Wr0ng " + pw, "28P01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), tc.dsn)
			if err == nil && tc.state == "28P01" && os.Getenv("CI") != "true" {
				s.Close()
				t.Skip("this cluster does not check passwords over TCP (the one scripts/services.sh starts does)")
			}
			wantErr(t, err, ErrAuthFailed)
			if errors.Is(err, ErrUnreachable) {
				t.Errorf("%v is also ErrUnreachable", err)
			}
			if got := sqlState(err); got != tc.state {
				t.Errorf("SQLSTATE %q, want %q (%v)", got, tc.state, err)
			}
			if strings.Contains(err.Error(), tc.secret) || strings.Contains(err.Error(), pw) {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

// TestOpenAuthFailedTurso starts a sqld that requires a JWT signed with its
// key: no token, or one signed with another key, is ErrAuthFailed on both
// transports; the right one opens.
func TestOpenAuthFailedTurso(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding
	token := func(key ed25519.PrivateKey) string {
		claims := b64.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT"}`)) + "." + b64.EncodeToString([]byte(`{"a":"rw"}`))
		return claims + "." + b64.EncodeToString(ed25519.Sign(key, []byte(claims)))
	}
	addr := startSQLD(t, "SQLD_AUTH_JWT_KEY="+b64.EncodeToString(pub)).addr()
	for _, scheme := range []string{"http", "ws"} {
		t.Run(scheme, func(t *testing.T) {
			base := scheme + "://" + addr
			good, err := Open(t.Context(), base+"?authToken="+token(priv))
			if err != nil {
				t.Fatalf("open with a good token: %v", err)
			}
			good.Close()
			for _, bad := range []string{"", token(otherKey), "not-a-jwt-at-all"} {
				dsn := base
				if bad != "" {
					dsn += "?authToken=" + bad
				}
				_, err := Open(t.Context(), dsn)
				wantErr(t, err, ErrAuthFailed)
				if bad != "" && strings.Contains(err.Error(), bad) {
					t.Errorf("error shows the token: %v", err)
				}
			}
		})
	}
}
