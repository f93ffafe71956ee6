"""Fixtures of the acceptance suite; the helpers live in acc_support (a unique module name: every
test folder has a conftest.py, so `from conftest import …` would depend on collection order)."""

from acc_support import api_server, proxy_factory, upstream

__all__ = ["api_server", "proxy_factory", "upstream"]
