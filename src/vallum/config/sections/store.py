"""`store:` — where the behaviour layer keeps events, entities and decisions."""

from __future__ import annotations

from vallum.config.sections.base import Section


class StoreConfig(Section):
    #: sqlite:///path or postgresql://user@host/db; empty = sqlite under data_dir
    url: str = ""
