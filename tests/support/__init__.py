"""Helpers shared by the test folders and bench/: plain modules, imported by name
(``tests.support.net``), so nothing has to import a conftest to reuse them."""
