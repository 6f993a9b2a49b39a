# fieldsync: `make help` lists the targets. Each one calls a script in scripts/, which works without make too.
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-13s %s\n", $$1, $$2}'

setup: ## create .venv and install the npm packages of the embedded server
	scripts/setup

test: ## set up and run the whole test suite against a real embedded server
	scripts/test

test-couchdb: ## the whole suite against an Apache CouchDB 3.5.0 node (../shared/couchdb/couchdb3, built if needed)
	scripts/test --couchdb

ci: ## what CI runs: the whole suite on the embedded server, then on Apache CouchDB 3.5.0
	bash .ci/run

lint: ## ruff and mypy
	scripts/lint

run: ## set up and run fieldsync on the embedded server (scripts/run up)
	scripts/run

bench: ## run every benchmark in bench/ and print its figures (COUCH_URL=http://admin:pw@host:port: on that server)
	@for b in bench/*.py; do case $$b in */__init__.py|*/common.py) continue;; esac; \
		echo "== $$b"; .venv/bin/python $$b $(if $(COUCH_URL),--couch-url "$(COUCH_URL)") || exit 1; done

clean: ## stop the embedded server and remove its data (.fieldsync/)
	-.venv/bin/fieldsync server stop
	rm -rf .fieldsync

.PHONY: help setup test test-couchdb ci lint run bench clean
