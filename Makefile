# yitu: the commands. Each installs what is missing first and is safe to run again.
#   make demo   set up, start the embedded PostGIS + Redis, migrate, seed, serve http://127.0.0.1:8050
#   make test   set up (with Chromium for browser tests), run the gates, the whole test suite, then the fault run
#   make chaos  the 60-second fault run alone (bench/chaos.py: kills, restarts, outages; then nothing lost or twice)
#   make gates  the import contracts, ruff (lint and format) and mypy, without the tests
.PHONY: demo test chaos gates setup setup-test stop help

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
	.venv/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder
	@$(MAKE) --no-print-directory chaos

# A stack of its own on free ports (never the suite's), removed at the end; exit status 1 on any FAIL.
chaos: setup-test
	.venv/bin/python bench/chaos.py --seconds 60

gates: setup-test
	.venv/bin/lint-imports
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

stop:
	.venv/bin/yitu db down
