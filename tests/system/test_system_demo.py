"""`vallum demo` runs in CI: every step of the story as expected and the audit log verified."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_story_and_audit() -> None:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    r = subprocess.run([sys.executable, "-m", "vallum", "demo", "--json"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["ok"] is True
    steps = {s["title"]: s for s in out["steps"]}
    assert steps["tools/list hides get_weather (poisoned description)"]["got"] == "withheld"
    assert steps["call to the poisoned tool"]["got"] == "block"
    assert steps["page with 'ignore all previous instructions…'"]["got"] == "block"
    assert steps["a harmless request afterwards"]["got"] == "block"
    assert "risk posture" in steps["a harmless MCP tool call afterwards"]["detail"]
    assert out["decision"]["action"] == "block"
    assert any(x["rule"] == "loop.inline_attack" for x in out["decision"]["reasons"])
    assert out["audit"]["ok"] is True and "intact" in out["audit"]["message"]
