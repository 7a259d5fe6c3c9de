#!/usr/bin/env bash
# The one test command: start throwaway PostgreSQL and sqld, run the whole suite against
# them, stop them. Extra arguments go to `go test` (e.g. -run TestFoo -v).
# A server whose variable the caller already set (PGQRS_TEST_POSTGRES_DSN,
# PGQRS_TEST_TURSO_URL, with PGQRS_TEST_TURSO_URLS for a pool) is used as given and not
# started.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH=$PATH:/usr/local/go/bin; fi

services=()
[ -n "${PGQRS_TEST_POSTGRES_DSN:-}" ] || services+=(postgres)
[ -n "${PGQRS_TEST_TURSO_URL:-}" ] || services+=(sqld)

if [ ${#services[@]} -gt 0 ]; then
	dir=$(mktemp -d "${TMPDIR:-/tmp}/pgqrs-test.XXXXXX")
	# Always stop the servers and remove their state, however we exit.
	trap 'scripts/services.sh stop "$dir"; rm -rf "$dir"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	scripts/services.sh start "$dir" "${services[@]}"
	# shellcheck source=/dev/null
	source "$dir/env"
	echo "test.sh: started ${services[*]} for this run"
else
	echo "test.sh: started no servers (using PGQRS_TEST_POSTGRES_DSN and PGQRS_TEST_TURSO_URL as given)"
fi

# The dashboard's browser test (ui/e2e_test.go): Debian's chromium, and playwright-core
# from npm in a cache directory to drive it (it never downloads a browser). As root a
# missing one is installed; otherwise the test skips locally and fails under CI=true.
PLAYWRIGHT_VERSION=1.65.1
# Only what is missing: a machine whose Node.js and npm come from elsewhere (the
# image's own) cannot take Debian's nodejs and npm beside them ("held broken packages").
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "test.sh: installing ${missing[*]} with apt-get for the browser test"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	else
		echo "test.sh: chromium or node missing and not root: the browser test will skip (fail under CI=true)" >&2
	fi
fi
export PGQRS_PLAYWRIGHT_DIR=${PGQRS_PLAYWRIGHT_DIR:-${PGQRS_CACHE:-${HOME:-/tmp}/.cache/pgqrs}/playwright-core-$PLAYWRIGHT_VERSION}
if [ ! -f "$PGQRS_PLAYWRIGHT_DIR/node_modules/playwright-core/package.json" ] && command -v npm >/dev/null; then
	mkdir -p "$PGQRS_PLAYWRIGHT_DIR"
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent \
		--prefix "$PGQRS_PLAYWRIGHT_DIR" "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null ||
		echo "test.sh: npm install playwright-core failed: the browser test will skip (fail under CI=true)" >&2
fi

# Packages run side by side (-p 4) when the root package's Turso tests have a pool
# of sqld servers of their own (PGQRS_TEST_TURSO_URLS): cmd/pgqrs's tests wipe the
# database of PGQRS_TEST_TURSO_URL, which must then be no server of the pool. With one
# sqld for everything, packages take turns (-p 1). -parallel 8: most tests wait on
# timers and the network, not on the CPU, so more of them than cores run at once.
pkgs=1
[ -n "${PGQRS_TEST_TURSO_URLS:-}" ] && pkgs=4
status=0
go test -race -count=1 -p "$pkgs" -parallel "${PGQRS_TEST_PARALLEL:-8}" -timeout 20m ./... "$@" || status=$?
# The contrib modules (OpenTelemetry, Prometheus) have go.mod files of their own, which
# `go test ./...` does not enter: run each with the same servers and flags.
for mod in contrib/*/; do
	[ -f "$mod/go.mod" ] || continue
	echo "test.sh: go test in $mod"
	(cd "$mod" && go test -race -count=1 -parallel "${PGQRS_TEST_PARALLEL:-8}" -timeout 10m ./... "$@") || status=$?
done
# The Python package (python/, issue 16): build the shared library into it and
# run its unittest suite on SQLite, Postgres and Turso, after go test (cmd/pgqrs's
# tests wipe the database of PGQRS_TEST_TURSO_URL). stdlib unittest: no pytest needed.
echo "test.sh: python tests"
if make python >/dev/null; then
	py=$(command -v python3 || echo /usr/bin/python3)
	(cd python && PGQRS_PY_DSNS="sqlite:$(mktemp -d)/py.db ${PGQRS_TEST_POSTGRES_DSN:-} ${PGQRS_TEST_UI_TURSO_URL:-${PGQRS_TEST_TURSO_URL:-}}" \
		"$py" -m unittest discover -s tests) || status=$?
else
	status=1
fi
exit "$status"
