.PHONY: test services-up services-down

# Start throwaway PostgreSQL + sqld, run the whole suite, stop them.
test:
	./scripts/test.sh

# Long-lived servers for iterating by hand; state lives in .testenv/.
services-up:
	./scripts/services.sh start .testenv
	@echo 'now run: source .testenv/env'

services-down:
	./scripts/services.sh stop .testenv
