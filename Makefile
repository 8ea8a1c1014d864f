# evdistill_ros: `make demo` runs the main job end to end; `make test` runs the whole suite.
# Both set everything up first (apt ROS packages when missing, venv, catkin workspace).
SHELL := /bin/bash
IN_ENV := source scripts/env.sh &&
PYTEST_ARGS ?=

.PHONY: help setup test test-fast demo bench clean
help:
	@echo "make setup   install ROS (apt, if missing), the venv and build the catkin workspace"
	@echo "make demo    simulate data, distill, evaluate, run the live ROS pipeline -> demo_output/"
	@echo "make test    run the test suite (pytest)"
	@echo "make test-fast  the suite without the ROS and slow tests (under 3 minutes)"
	@echo "make bench   run the benchmarks in bench/ (prints figures)"
	@echo "make clean   remove the venv, workspace and demo output"

setup:
	@bash scripts/setup.sh

test: setup
	@$(IN_ENV) python -m pytest tests $(PYTEST_ARGS)

test-fast: setup
	@$(IN_ENV) python -m pytest tests -m "not ros and not slow" $(PYTEST_ARGS)

demo: setup
	@$(IN_ENV) python -m evdistill_ros.demo

bench: setup
	@$(IN_ENV) for b in bench/bench_*.py; do echo "== $$b"; python "$$b" || exit 1; done

clean:
	rm -rf .venv .catkin_ws demo_output .pytest_cache
