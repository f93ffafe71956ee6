"""`detection:` — the content-inspection engine."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vallum.config.sections.base import Section


class RuleOverride(Section):
    """Per-rule override from the config: change a rule's action or switch it off."""

    action: Literal["allow", "warn", "block"] | None = None
    enabled: bool = True


class EntropySettings(Section):
    enabled: bool = True
    min_length: int = Field(20, ge=8, le=4096)
    #: Shannon entropy (bits/char) at or above which an unexplained token is reported
    threshold: float = Field(4.2, ge=1.0, le=8.0)


class SemanticSettings(Section):
    """The optional `ml` extra's injection classifier.

    Off by default even when installed: on hard negatives (security articles that quote attacks)
    it adds false positives the pattern layer does not have (see docs/semantic.md for the numbers).
    """

    enabled: bool = False
    #: None = the calibrated thresholds shipped with the classifier head
    warn_threshold: float | None = Field(None, ge=0.0, le=1.0)
    block_threshold: float | None = Field(None, ge=0.0, le=1.0)


class DetectionConfig(Section):
    #: rule ids (or id prefixes ending in "*") switched off
    disable: list[str] = Field(default_factory=list)
    #: per-rule overrides keyed by rule id
    rules: dict[str, RuleOverride] = Field(default_factory=dict)
    #: extra rule files (same format as the built-in ones) loaded after the built-in set
    rule_files: list[str] = Field(default_factory=list)
    max_decode_depth: int = Field(4, ge=0, le=10)
    #: total bytes that decoding one input may produce
    max_decoded_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    #: inputs larger than this are not inspected: they are blocked (fail closed)
    max_input_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    entropy: EntropySettings = Field(default_factory=EntropySettings)
    semantic: SemanticSettings = Field(default_factory=SemanticSettings)
