#!/usr/bin/env python3
"""Checks that the product crate's top-level modules import each other in one direction only.

docs/architecture.md draws the module map: server -> reconcile -> {router, metrics} -> decision,
with gcp and events knowing nothing of rollouts. This check reads every file under src/, finds
each `crate::<module>` path (in `use` lines, grouped imports and inline paths alike), and fails
when the graph has a cycle or an edge the map forbids. It reads text, not the compiler's view,
so a path in a comment or a string counts too: keep those honest, or spell them without
`crate::`.

It also checks that the decision core names no platform but the one it was written for: App
Engine, load balancers and their records are the routers' business (issue 15), so no word of
theirs may appear anywhere under src/decision/, comments included.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# What each top-level module may import: the map in docs/architecture.md, edges pointing one way,
# toward the decision core and the leaves. A module missing here fails the check: a new module
# takes its place on the map on purpose.
LEAVES = {"clock", "failure", "ids", "target", "logs"}

# Words of the platforms added beside Cloud Run, which the decision core must not know.
PLATFORM_WORDS = re.compile(
    r"app.?engine|url.?map|load.?balanc|firestore|backend.?service|gae_app|https_lb|appspot",
    re.IGNORECASE,
)
ALLOWED = {
    "clock": set(),
    "logs": set(),
    "failure": set(),
    "ids": set(),
    "target": {"ids"},
    "gcp": LEAVES,
    "events": LEAVES | {"gcp"},
    "decision": {"ids", "target"},
    "router": LEAVES | {"decision", "gcp"},
    "metrics": LEAVES | {"decision", "gcp"},
    "flight": {"target"},
    "reconcile": LEAVES | {"decision", "router", "metrics", "flight", "gcp"},
    "config": LEAVES | {"decision", "gcp", "events"},
    "error": LEAVES | {"gcp", "events", "router", "metrics", "reconcile"},
    "operate": LEAVES | {"config", "decision", "gcp", "metrics", "reconcile", "router"},
    # Listens to the reconciler's decision records (reconcile::DecisionRecord) and tells Pub/Sub
    # and chat; only server and main may use it.
    "notify": LEAVES | {"config", "decision", "gcp", "reconcile"},
    # server -> operate: the status page shows a service as `cutover status` reads it (operate::show).
    "server": LEAVES | {"config", "decision", "error", "events", "flight", "gcp", "metrics", "notify", "operate", "reconcile", "router"},
}

CRATE_PATH = re.compile(r"\bcrate::(\{[^}]*\}|\w+)")


def module_of(path: pathlib.Path) -> str | None:
    rel = path.relative_to(SRC)
    if rel.parts[0] in ("main.rs", "lib.rs", "bin"):
        return None
    return rel.parts[0].removesuffix(".rs")


def imports(text: str) -> set[str]:
    found = set()
    for m in CRATE_PATH.finditer(text):
        item = m.group(1)
        if item.startswith("{"):
            for part in item.strip("{}").split(","):
                name = part.strip().split("::")[0].strip()
                if name:
                    found.add(name)
        else:
            found.add(item)
    return found


def main() -> int:
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for path in sorted(SRC.rglob("*.rs")):
        module = module_of(path)
        if module is None:
            continue
        graph.setdefault(module, set())
        for target in imports(path.read_text()):
            if target in ("fixture",) or target == module:
                continue
            graph[module].add(target)
            where.setdefault((module, target), str(path.relative_to(ROOT)))

    problems = []
    for path in sorted((SRC / "decision").rglob("*.rs")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if PLATFORM_WORDS.search(line):
                problems.append(
                    f"{path.relative_to(ROOT)}:{n} names a platform in the decision core: {line.strip()}"
                )
    for module, targets in sorted(graph.items()):
        if module not in ALLOWED:
            problems.append(f"{module} is not on the map: give it its place in ALLOWED")
            continue
        for target in sorted(targets - ALLOWED[module]):
            problems.append(f"{module} -> {target} is against the map ({where[(module, target)]})")

    # Cycles: Tarjan's strongly connected components.
    index, low, stack, on_stack, sccs = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    for scc in sccs:
        edges = [
            f"{a} -> {b} ({where[(a, b)]})" for a in scc for b in sorted(graph[a]) if b in scc
        ]
        problems.append("cycle between " + ", ".join(scc) + ": " + "; ".join(edges))

    for module, targets in sorted(graph.items()):
        print(f"{module:10} -> {', '.join(sorted(targets)) or '(nothing)'}")
    if problems:
        print("\nlayering problems:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"\n{len(graph)} modules, no cycle, every edge on the map")
    return 0


if __name__ == "__main__":
    sys.exit(main())
