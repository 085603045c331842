# yitu: two commands. Both install what is missing first and are safe to run again.
#   make demo   set up, start the embedded PostGIS + Redis, migrate, seed, serve http://127.0.0.1:8050
#   make test   set up (with Chromium for browser tests), then run the whole test suite
.PHONY: demo test setup setup-test stop help

help:  ## default target when no command is given
	@sed -n 's/^#   //p' Makefile

setup:
	@scripts/bootstrap.sh

setup-test:
	@scripts/bootstrap.sh --test

demo: setup
	.venv/bin/yitu demo

test: setup-test
	.venv/bin/python -m pytest

stop:
	.venv/bin/yitu db down
