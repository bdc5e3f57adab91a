"""Shared helpers of the infra checks: load Terraform files with python-hcl2 and walk them.

python-hcl2 (8.x) returns, per file, a dict of top-level block kinds to lists:
  resource: [{'"type"': {'"name"': body}}], data: same, module/variable/output/provider:
  [{'"name"': body}], locals/terraform: [body]. Labels keep their quotes, string
  literals keep theirs ('"text"'), expressions are '${...}', and every block body
  carries '__is_block__': True, which is how a block is told from an object value.
  Comments come back too, under '__comments__' / '__inline_comments__'; every
  '__x__' key is python-hcl2's own and is skipped here (see `internal`).
"""

import pathlib
import re
import sys

import hcl2

IS_BLOCK = "__is_block__"


def fail(check, msg):
    print(f"{check}: {msg}")


def internal(key):
    """True for python-hcl2's own keys (__is_block__, __comments__, ...)."""
    return isinstance(key, str) and key.startswith("__") and key.endswith("__")


def items(d):
    return ((k, v) for k, v in d.items() if not internal(k))


def unquote(s):
    if isinstance(s, str) and len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        return s[1:-1]
    return s


def tf_files(root):
    root = pathlib.Path(root)
    return sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)


def load(path):
    with open(path, encoding="utf-8") as f:
        return hcl2.load(f)


def is_block_list(value):
    return isinstance(value, list) and bool(value) and all(isinstance(x, dict) and x.get(IS_BLOCK) for x in value)


class Module:
    """All .tf files of one directory, i.e. one Terraform module."""

    def __init__(self, directory, files):
        self.dir = directory
        self.files = files  # {path: parsed}

    def blocks(self, kind):
        """Yield (path, labels tuple, body) for each block of this kind."""
        for path, parsed in self.files.items():
            for item in parsed.get(kind, []):
                if kind in ("resource", "data"):
                    for t, inner in items(item):
                        for n, body in items(inner):
                            yield path, (unquote(t), unquote(n)), body
                elif kind in ("locals", "terraform"):
                    yield path, (), item
                else:
                    for n, body in items(item):
                        yield path, (unquote(n),), body

    def locals(self):
        out = {}
        for _, _, body in self.blocks("locals"):
            out.update(dict(items(body)))
        return out

    def variables(self):
        return {labels[0]: body for _, labels, body in self.blocks("variable")}


def modules(root):
    """Parse every .tf under root; {directory: Module}. Raises on the first parse error."""
    by_dir = {}
    for path in tf_files(root):
        by_dir.setdefault(path.parent, {})[path] = load(path)
    return {d: Module(d, files) for d, files in sorted(by_dir.items())}


def strings(obj):
    """Every string inside a parsed value (expressions included), depth first."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for _, v in items(obj):
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)


def literal(value):
    """The Python value of a literal HCL value, or None if it is an expression."""
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        if value.startswith("${"):
            return None
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            inner = value[1:-1]
            return None if "${" in inner else inner
        return None
    if isinstance(value, list):
        items = [literal(v) for v in value]
        return None if any(i is None for i in items) else items
    return None


VAR_RE = re.compile(r"(?<![\w.])var\.([A-Za-z_][\w-]*)")
LOCAL_RE = re.compile(r"(?<![\w.])local\.([A-Za-z_][\w-]*)")
