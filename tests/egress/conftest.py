"""Fixtures for the egress proxy tests; the harness itself lives in egress_support.py."""

from egress_support import _loop_harness, harness, test_ca, upstream_tls  # noqa: F401
