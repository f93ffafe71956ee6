"""`vallum run`: every service wired into one process tree, and the loop between them.

- `identity`     who is behind data-path traffic (listener, Proxy-Authorization, trusted header)
- `feed`         inline decisions → behaviour events (`guard.verdict`, `tool.call`, `tool.result`)
- `enforcement`  behaviour decisions → inline posture (decision cache, session threat score, gate)
- `shared`       Redis-backed shared state for several replicas (rate limits, scores, pub/sub)
- `sinks`        the decision sink of a vallum process (audit log + metrics)
- `stack`        `Stack`: start and stop everything in-process; `build_app` for the API + console
- `demo`         `vallum demo`: the scripted scenario

This is the outermost layer: it may import every other vallum package; none imports it.
"""
