"""One pydantic model per configuration section; each area owns its own file."""
