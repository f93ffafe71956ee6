"""The Python pre-checks ("guards") that skip CEL evaluations must never change an outcome:
whenever a guard says a condition is false, the CEL program says false too."""

from __future__ import annotations

import itertools
import random

from vallum.behaviour.rules import MISSING, cel_env, compile_cel, guard_false, guards_for, load_ruleset

EXPRESSIONS = [
    "user.x >= 3.0",
    "user.x >= 3.0 && user.y < 2.5",
    "user.x > 1.0 && size(user.l) >= 2",
    "first.a && user.x <= 4.0",
    "first.a || first.b",
    "signals.s == 1.0 && has(event.attrs.k)",
    "'k' in event.attrs && event.attrs.k >= 2.0",
    "has(event.attrs.k) && event.attrs.k == 'block'",
    "event.attrs.flag && user.x >= 1.0",
    'event.attrs["k"] >= 1.5 && first.a',
    "(user.x >= 3.0 || first.a) && user.y > 0.0",
    "user.x >= 3.0 && user.y >= 1.0 || first.b",
]
VALUES = [MISSING, 0.0, 1.0, 2.0, 3.0, 5.0, float("nan"), True, False, "block", "allow", 3, [], [True, False], [1.0, 2.0, 3.0]]


def _maps(rng: random.Random) -> dict:
    def pick(d: dict, names: tuple[str, ...]) -> None:
        for n in names:
            v = rng.choice(VALUES)
            if v is not MISSING:
                d[n] = v
    user: dict = {}
    pick(user, ("x", "y", "l"))
    first: dict = {}
    pick(first, ("a", "b"))
    signals: dict = {}
    pick(signals, ("s",))
    attrs: dict = {}
    pick(attrs, ("k", "flag"))
    return {"user": user, "first": first, "signals": signals, "event": {"attrs": attrs}}


def _guards_say_false(guards: tuple, act: dict) -> bool:
    for src, name, op, const in guards:
        d = act["event"]["attrs"] if src == "attrs" else act.get(src, {})
        value = [d.get(n, MISSING) for n in const] if op == "or" else d.get(name, MISSING)
        if guard_false(op, value, const):
            return True
    return False


def test_guards_never_contradict_cel() -> None:
    rng = random.Random(1)
    decided = 0
    for expr in EXPRESSIONS:
        prog = compile_cel(expr)
        guards = guards_for(expr)
        for _ in range(300):
            act = _maps(rng)
            if not _guards_say_false(guards, act):
                continue
            decided += 1
            try:
                out = prog.eval(cel_env().Activation(act)).value()
            except Exception:  # an error is not "false"
                out = "error"
            assert out is False, (expr, act)
    assert decided > 500  # the guards do decide most cases here


def test_guard_shapes() -> None:
    assert guards_for("user.x >= 3.0 && user.y < 2.5") == (("user", "x", ">=", 3.0), ("user", "y", "<", 2.5))
    assert guards_for("first.a || first.b") == (("first", "", "or", ("a", "b")),)
    # not plain conjunctions, or shapes whose CEL types differ from Python's: no guard
    for e in ("user.x >= 3.0 && user.y >= 1.0 || first.b", "first.a ? user.x > 1.0 : false", "user.x >= 3",
              "first.a || user.b", "(user.x >= 3.0 && first.a)"):
        assert guards_for(e) == (), e
    assert guards_for("user.x >= 3.0 && 'x && y' == event.attrs.s") == (("user", "x", ">=", 3.0),)


def test_builtin_pack_is_mostly_guarded() -> None:
    rs = load_ruleset()
    guarded = [r.id for r in rs.rules if r.guards]
    assert len(guarded) >= len(rs.rules) - 2
    assert all(isinstance(g, tuple) for r in rs.rules for g in r.guards)
    assert list(itertools.chain.from_iterable(r.guards for r in rs.rules))
