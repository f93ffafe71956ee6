"""`behaviour:` — the behavioural risk engine (events, features, rules, scores, decisions)."""

from __future__ import annotations

from pydantic import Field, model_validator

from vallum.config.sections.base import Section


class ThresholdsConfig(Section):
    """Score (0-100) at or above which an entity gets each action."""

    review: float = Field(default=40.0, ge=0, le=100)
    challenge: float = Field(default=60.0, ge=0, le=100)
    block: float = Field(default=80.0, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdsConfig:
        if not (self.review <= self.challenge <= self.block):
            raise ValueError("thresholds must satisfy review <= challenge <= block")
        return self


class SessionTimeouts(Section):
    #: a session with no event for this long is over (seconds of event time)
    idle_s: int = Field(default=30 * 60, ge=1)
    #: a session is over this long after its first event, whatever happens
    absolute_s: int = Field(default=24 * 3600, ge=1)


class BehaviourConfig(Section):
    enabled: bool = True
    #: extra rule files (YAML) loaded after the built-in pack
    rule_files: list[str] = Field(default_factory=list)
    #: built-in rule ids (or prefixes ending in "*") switched off
    disable: list[str] = Field(default_factory=list)
    #: reload rule files when they change on disk (checked at most once per second)
    hot_reload: bool = True
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig)
    #: a rule's contribution halves every this many seconds of event time
    score_half_life_s: int = Field(default=6 * 3600, ge=60)
    sessions: SessionTimeouts = Field(default_factory=SessionTimeouts)
    #: optional MaxMind-format file (ASN / anonymous-IP / hosting flags), read with maxminddb
    mmdb_path: str = ""
    #: extra MMDB files (e.g. an ASN database beside an anonymous-IP one); all are merged
    mmdb_paths: list[str] = Field(default_factory=list)
    #: ASNs treated as datacenter / hosting networks, in addition to the MMDB's flags
    datacenter_asns: list[int] = Field(default_factory=list)
    #: events older than this (days of event time) are deleted from the store
    retention_days: int = Field(default=90, ge=1)
    #: an event whose ts is further than this in the future (seconds, wall clock) is rejected
    max_future_skew_s: int = Field(default=900, ge=0)
    #: an event older than this (days, wall clock) is rejected
    max_event_age_days: int = Field(default=400, ge=1)
    #: at most this many events in one POST
    max_batch_events: int = Field(default=10_000, ge=1)
    #: largest request body accepted (bytes, after gzip decompression)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    #: events per minute per API key; 0 = off
    rate_limit_per_key_per_minute: int = Field(default=600_000, ge=0)
    #: POSTed on every decision change (JSON); empty = off
    webhook_url: str = ""
    webhook_timeout_s: float = Field(default=3.0, gt=0)
    #: replay stored events into the engine on start (rebuilds features and scores)
    replay_on_start: bool = True
