"""Benchmarks of the snippet service; see bench/README.md.

Run them all with ``make bench`` (``.venv/bin/python -m bench.run_all``), or one at a time
from the project root: ``python -m bench.noop``, ``bench.highlight``, ``bench.end_to_end``,
``bench.web`` (and ``bench.client_floor``, ``bench.sidekiq``). Each starts its own private
Valkey and servers on free loopback ports, stops by itself and prints a table (with the
machine's CPU count) to stdout.
"""
