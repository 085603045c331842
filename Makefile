# yitu: two commands. Both install what is missing first and are safe to run again.
#   make demo   set up, start the embedded PostGIS + Redis, migrate, seed, serve http://127.0.0.1:8050
#   make test   set up (with Chromium for browser tests), run the gates, then the whole test suite
#   make gates  the import contracts, ruff (lint and format) and mypy, without the tests
.PHONY: demo test gates setup setup-test stop help

help:  ## default target when no command is given
	@sed -n 's/^#   //p' Makefile

setup:
	@scripts/bootstrap.sh

setup-test:
	@scripts/bootstrap.sh --test

demo: setup
	.venv/bin/yitu demo

test: setup-test
	@$(MAKE) --no-print-directory gates
	.venv/bin/python -m pytest

gates: setup-test
	.venv/bin/lint-imports
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

stop:
	.venv/bin/yitu db down
