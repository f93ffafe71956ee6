"""The HTTP API (Starlette) and the behaviour service behind it.

`create_app(config, store=…, sink=…, extra_routes=…, lifespan_hooks=…)` builds the app that `vallum
serve` runs and that the console and `/metrics` mount into; `BehaviourService` wires the risk
engine to the store. May import: behaviour, storage, decisions, detection, config. Not console/cli.
"""

from vallum.api.app import create_app
from vallum.api.service import BehaviourService

__all__ = ["BehaviourService", "create_app"]
