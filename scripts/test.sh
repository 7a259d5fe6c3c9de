#!/usr/bin/env bash
# The one test command: start throwaway PostgreSQL and sqld, run the whole suite against
# them, stop them. Extra arguments go to `go test` (e.g. -run TestFoo -v).
# A server whose variable the caller already set (PGQRS_TEST_POSTGRES_DSN,
# PGQRS_TEST_TURSO_URL) is used as given and not started.
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

status=0
go test -race -count=1 -p 1 -timeout 20m ./... "$@" || status=$?
exit "$status"
