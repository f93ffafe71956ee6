"""The deployment examples under deploy/: their vallum configs pass the strict schema, the YAML
parses and has the expected shape, and the systemd units pass `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vallum.config import Config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.parametrize("name", ["vallum-gateway.yaml", "vallum-sidecar.yaml"])
def test_example_configs_are_valid(name: str) -> None:
    cfg = Config.model_validate(yaml.safe_load((DEPLOY / name).read_text()))
    assert cfg.store.url.startswith("postgresql://") and cfg.redis_url.startswith("redis://")


def test_kubernetes_manifest_shape_and_embedded_configs() -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "vallum.yaml").read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds.count("ConfigMap") == 2 and "StatefulSet" in kinds and "Service" in kinds
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"]
        if d["kind"] == "ConfigMap":
            Config.model_validate(yaml.safe_load(d["data"]["vallum.yaml"]))
        if d["kind"] in ("StatefulSet", "Deployment"):
            spec = d["spec"]
            assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
            names = {c["name"] for c in spec["template"]["spec"]["containers"]}
            assert "vallum" in names
            vols = {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
            vols |= {v["metadata"]["name"] for v in spec.get("volumeClaimTemplates", [])}
            for c in spec["template"]["spec"]["containers"]:
                for m in c.get("volumeMounts", []):
                    assert m["name"] in vols
    svc = next(d for d in docs if d["kind"] == "Service")
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    ports = {p["name"] for c in sts["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports


def test_compose_file_shape() -> None:
    doc = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"postgres", "redis", "vallum-1", "vallum-2"} <= set(services)
    for name in ("vallum-1", "vallum-2"):
        s = services[name]
        assert set(s["depends_on"]) == {"postgres", "redis"}
        src = s["volumes"][0].split(":")[0]
        assert (DEPLOY / "compose" / src).resolve().is_file()
        for v in s["volumes"][1:]:
            assert v.split(":")[0] in doc["volumes"]
    audit = [services[n]["volumes"][1].split(":")[0] for n in ("vallum-1", "vallum-2")]
    assert len(set(audit)) == 2  # one audit log folder per replica


@pytest.mark.parametrize("unit", ["vallum.service", "vallum-mcp@.service"])
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    text = (DEPLOY / "systemd" / unit).read_text()
    assert "[Service]" in text and "ExecStart=" in text and "[Install]" in text
    # verify against this machine's vallum binary (the unit names /opt/vallum/.venv/bin/vallum)
    vallum = Path(sys.executable).parent / "vallum"
    target = tmp_path / (unit.replace("@", "@test") if "@" in unit else unit)
    target.write_text(text.replace("/opt/vallum/.venv/bin/vallum", str(vallum)))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(target)], capture_output=True, text=True,
                       timeout=60)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines()
                if ln.strip() and "mcp-test.env" not in ln and "Failed to prepare" not in ln]
    assert r.returncode == 0 or not problems, "\n".join(problems)
