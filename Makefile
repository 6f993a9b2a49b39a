# fieldsync: `make help` lists the targets. Each one calls a script in scripts/, which works without make too.
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

setup: ## create .venv and install the npm packages of the embedded server
	scripts/setup

test: ## set up and run the whole test suite against a real embedded server
	scripts/test

lint: ## ruff and mypy
	scripts/lint

run: ## set up and run fieldsync on the embedded server (scripts/run up)
	scripts/run

bench: ## run every benchmark in bench/ and print its figures
	@for b in bench/*.py; do case $$b in */__init__.py|*/common.py) continue;; esac; \
		echo "== $$b"; .venv/bin/python $$b || exit 1; done

clean: ## stop the embedded server and remove its data (.fieldsync/)
	-.venv/bin/fieldsync server stop
	rm -rf .fieldsync

.PHONY: help setup test lint run bench clean
