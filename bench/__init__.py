"""The serving benchmark (``python bench/serve_bench.py``); a package so the tests import it."""
