"""Configuration: `vallum.yaml`, strict (unknown keys are errors naming the key and its path).

`load_config(path)` reads and validates a file; `Config()` is the embedded default. Each area owns
one section model in `vallum.config.sections.<area>`; `vallum.config.schema.Config` assembles them.
May import: the standard library, pydantic, yaml. Nothing else in vallum.
"""

from vallum.config.loader import ConfigError, load_config, parse_config
from vallum.config.schema import Config

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]
