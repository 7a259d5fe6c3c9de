.PHONY: test services-up services-down python

# Start throwaway PostgreSQL + sqld, run the whole suite, stop them.
test:
	./scripts/test.sh

# Long-lived servers for iterating by hand; state lives in .testenv/.
services-up:
	./scripts/services.sh start .testenv
	@echo 'now run: source .testenv/env'

services-down:
	./scripts/services.sh stop .testenv

# The Python package's shared library (python/capi, cgo), built into the package.
python:
	go build -buildmode=c-shared -o python/pgqrs/_lib/libpgqrs.so ./python/capi
