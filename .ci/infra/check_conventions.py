#!/usr/bin/env python3
"""Check tf-conventions: what makes infra/ readable and its grants reviewable.

* every .tf file opens with a comment (saying why the file exists);
* every IAM resource (and the custom role) has a comment right above it (its reason);
* only additive `*_iam_member` grants: no authoritative `*_iam_binding`/`*_iam_policy`,
  which would silently remove grants made outside this configuration;
* no allUsers/allAuthenticatedUsers member, no basic role (owner/editor/viewer);
* every role and custom-role permission granted appears in one of the table files
  (README.md: the IAM table of its Deploy section; docs/platforms.md: the rows
  of the platforms other than Cloud Run, until they are folded into README.md);
* every dashboard tile has a title;
* `terraform fmt -check`, when a terraform binary is on PATH (it is not installed by
  this script: the check is skipped, and says so, where it is missing).
"""

import json
import pathlib
import re
import shutil
import subprocess
import sys

import tfload

CHECK = "tf-conventions"
RESOURCE_RE = re.compile(r'^resource\s+"(google_[a-z0-9_]+)"\s+"([^"]+)"', re.M)
IAM_TYPE_RE = re.compile(r"_iam_(member|binding|policy)$|^google_project_iam_custom_role$")
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}


def main(root="infra", *tables):
    root = pathlib.Path(root)
    errors = []
    tables = tables or ("README.md",)
    texts = []
    for t in tables:
        if pathlib.Path(t).exists():
            texts.append(pathlib.Path(t).read_text(encoding="utf-8"))
        else:
            errors.append(f"{t} is missing: it must hold (part of) the IAM table")
    table_text = "\n".join(texts)
    table = " or ".join(tables)
    grants = 0
    for path in tfload.tf_files(root):
        text = path.read_text(encoding="utf-8")
        first = next((l for l in text.splitlines() if l.strip()), "")
        if not first.lstrip().startswith(("#", "//", "/*")):
            errors.append(f"{path}:1: the file must open with a comment saying why it exists")
        lines = text.splitlines()
        for m in RESOURCE_RE.finditer(text):
            rtype, name = m.group(1), m.group(2)
            if not IAM_TYPE_RE.search(rtype):
                continue
            grants += 1
            lineno = text.count("\n", 0, m.start())  # 0-based line of `resource`
            above = next((lines[i] for i in range(lineno - 1, -1, -1) if lines[i].strip()), "")
            if not above.lstrip().startswith(("#", "//")):
                errors.append(f"{path}:{lineno + 1}: {rtype}.{name} needs a comment above it giving the reason for the grant")
            if rtype.endswith(("_iam_binding", "_iam_policy")):
                errors.append(f"{path}:{lineno + 1}: {rtype}.{name} is authoritative; use the matching *_iam_member")

    for d, mod in tfload.modules(root).items():
        for path, (rtype, name), body in mod.blocks("resource"):
            if not IAM_TYPE_RE.search(rtype):
                continue
            member = tfload.unquote(body.get("member", ""))
            if isinstance(member, str) and ("allUsers" in member or "allAuthenticatedUsers" in member):
                errors.append(f"{path}: {rtype}.{name} grants to {member}")
            role = tfload.literal(body.get("role"))
            if isinstance(role, str):
                if role in BASIC_ROLES:
                    errors.append(f"{path}: {rtype}.{name} grants the basic role {role}")
                if table_text and f"`{role}`" not in table_text and role not in table_text:
                    errors.append(f"{path}: {rtype}.{name} grants {role}, which the IAM table in {table} does not list")
            for perm in tfload.literal(body.get("permissions")) or []:
                if table_text and perm not in table_text:
                    errors.append(f"{path}: custom role {name} has {perm}, which {table} does not list")

    dash = root / "dashboard.json"
    if dash.exists():
        tiles = json.loads(dash.read_text(encoding="utf-8")).get("mosaicLayout", {}).get("tiles", [])
        if not tiles:
            errors.append(f"{dash}: no tiles")
        for i, tile in enumerate(tiles):
            if not tile.get("widget", {}).get("title"):
                errors.append(f"{dash}: tile {i} has no title")

    fmt = "skipped (no terraform binary on PATH)"
    tf = shutil.which("terraform")
    if tf:
        r = subprocess.run([tf, "fmt", "-check", "-diff", "-recursive", str(root)], capture_output=True, text=True)
        if r.returncode != 0:
            errors.append("terraform fmt -check failed; run `terraform fmt -recursive infra`:\n" + r.stdout)
            fmt = "NOT clean"
        else:
            fmt = "clean"

    for e in errors:
        tfload.fail(CHECK, e)
    print(f"{CHECK}: {grants} IAM resources reviewed, terraform fmt {fmt}, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
