"""The strict base model every configuration section derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Unknown keys are errors; values are validated strictly but YAML scalars still coerce."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)
