"""The whole configuration, assembled from the per-area sections."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from vallum.config.sections.audit import AuditConfig
from vallum.config.sections.base import Section
from vallum.config.sections.behaviour import BehaviourConfig
from vallum.config.sections.console import ConsoleConfig
from vallum.config.sections.detection import DetectionConfig
from vallum.config.sections.egress import EgressConfig, ProxyConfig
from vallum.config.sections.identity import IdentityConfig
from vallum.config.sections.mcp import McpConfig
from vallum.config.sections.store import StoreConfig
from vallum.detection.model import Mode


class Config(Section):
    """`vallum.yaml`. Every key is optional; `Config()` is the embedded default."""

    mode: Mode = Mode.BALANCED
    data_dir: str = "./vallum-data"
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    egress: EgressConfig = Field(default_factory=EgressConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    behaviour: BehaviourConfig = Field(default_factory=BehaviourConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    #: redis://host:port/db for state shared between replicas; empty = in-process state
    redis_url: str = ""
    #: prefix of every Redis key and channel (several deployments may share one Redis)
    redis_prefix: str = "vallum:"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def store_url(self) -> str:
        """The store URL, defaulting to a SQLite file under data_dir."""
        if self.store.url:
            return self.store.url
        return f"sqlite:///{(self.data_path / 'vallum.db').as_posix()}"
