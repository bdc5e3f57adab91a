#!/usr/bin/env python3
"""Extract the google provider's argument schema from the @cdktf/provider-google tarball
(or google-beta's, from @cdktf/provider-google-beta: same layout).

`terraform validate` needs the provider binary, which cannot be downloaded here.
The cdktf prebuilt bindings are generated from the provider's own schema and are
published to npm, so they are the closest offline source of truth.

Where the names come from: for every resource/data source the package has a
`lib/<name>/index.js` holding

* `Class.tfResourceType = "google_..."`, and a class extending
  `cdktf.TerraformResource`, `cdktf.TerraformDataSource` or `cdktf.TerraformProvider`;
* a `synthesizeHclAttributes()` method that lists every configurable top-level
  argument under its snake_case Terraform name, each entry as
  `name: { value: ..., isBlock: true|false, type: "...", storageClassType: "..." }`;
* one `<camelName>ToHclTerraform(struct)` function per nested block type with the
  same entry shape, and the entry's `value` expression calls the nested block's
  function: that is how the block tree is followed;
* getters such as `this.getStringAttribute('uri')` for every readable attribute,
  computed ones included (used to check references like `google_x.y.uri`).

Whether an argument is required comes from the matching `index.d.ts`: the
`<Class>Config` interface (top level) and the struct interface named in each
`<camelName>ToHclTerraform(struct?: <Interface> ...)` declaration list members as
`readonly camelName: T` (required) or `readonly camelName?: T` (optional); the
entry's value expression (`struct.camelName` / `this._camelName`) links the
snake_case Terraform name to that camelCase member.

The HCL variant (rather than `...ToTerraform`) is used because it also records
whether a name is a nested block or a plain attribute.

Output: a JSON file
  {"package": ..., "package_version": ..., "provider_version": ...,
   "resources": {type: node}, "data_sources": {type: node}, "provider": node}
with node = {"args": {name: {"block": bool, "required": bool, "type": str, "node": node|null}},
             "readable": [names]}.
"""

import argparse
import json
import re
import sys
import tarfile

FUNC_RE = re.compile(r"^function (\w+)ToHclTerraform\(struct\) \{\n(.*?)^\}\n", re.M | re.S)
CLASS_RE = re.compile(
    r"^class (\w+) extends cdktf\.(TerraformResource|TerraformDataSource|TerraformProvider) \{\n(.*?)^\}\n",
    re.M | re.S,
)
SYNTH_RE = re.compile(r"^    synthesizeHclAttributes\(\) \{\n(.*?)^    \}\n", re.M | re.S)
TYPE_RE = re.compile(r'^(\w+)\.tfResourceType = "([^"]+)";', re.M)
ENTRY_RE = re.compile(
    r'^\s+(?:"([^"]+)"|([A-Za-z_]\w*)): \{\s*value: (.*?),\s*isBlock: (true|false),\s*'
    r'type: "(\w+)",\s*storageClassType: "(\w+)",\s*\}',
    re.M | re.S,
)
# a nested struct's converter, i.e. not one of cdktf's own (`cdktf.stringToHclTerraform`)
CHILD_RE = re.compile(r"(?<![\w.])(\w+)ToHclTerraform\b")
GETTER_RE = re.compile(r"this\.(?:get\w*Attribute|interpolationForAttribute)\('([^']+)'\)")
MEMBER_RE = re.compile(r"(?:struct\.|this\._)(\w+)")
IFACE_RE = re.compile(r"^export interface (\w+)(?: extends [^{]+)? \{\n(.*?)^\}", re.M | re.S)
REQ_RE = re.compile(r"^    readonly (\w+): ", re.M)
DECL_RE = re.compile(r"^export declare function (\w+)ToHclTerraform\(struct\?: ([^)]*)\)", re.M)

KIND = {"TerraformResource": "resources", "TerraformDataSource": "data_sources", "TerraformProvider": "provider"}


class Module:
    """One lib/<name>/ directory: its index.js converters and index.d.ts interfaces."""

    def __init__(self, js, dts):
        self.funcs = {m.group(1): m.group(2) for m in FUNC_RE.finditer(js)}
        self.required = {m.group(1): set(REQ_RE.findall(m.group(2))) for m in IFACE_RE.finditer(dts)}
        # `struct?: FooOutputReference | Foo` for single blocks, `struct?: Foo | cdktf.IResolvable` for lists
        self.struct_of = {}
        for m in DECL_RE.finditer(dts):
            names = [t.strip() for t in m.group(2).split("|")]
            self.struct_of[m.group(1)] = next((t for t in names if t in self.required), "")
        self.memo = {}

    def entries(self, body, required, stack):
        args = {}
        for m in ENTRY_RE.finditer(body):
            name = m.group(1) or m.group(2)
            value, is_block, typ = m.group(3), m.group(4) == "true", m.group(5)
            children = [c for c in CHILD_RE.findall(value) if c in self.funcs]
            node = self.resolve(children[0], stack) if children else None
            members = MEMBER_RE.findall(value)
            req = bool(members) and members[-1] in required
            args[name] = {"block": is_block, "required": req, "type": typ, "node": node}
        return args

    def resolve(self, fname, stack):
        if fname in self.memo:
            return self.memo[fname]
        if fname in stack:  # recursive struct: stop here, accept anything below
            return None
        stack.add(fname)
        required = self.required.get(self.struct_of.get(fname, ""), set())
        node = {"args": self.entries(self.funcs[fname], required, stack), "readable": []}
        stack.discard(fname)
        self.memo[fname] = node
        return node


def parse_module(js, dts):
    """Yield (kind, tf_type, node) for each top-level class in one lib/<name>/."""
    mod = Module(js, dts)
    types = {m.group(1): m.group(2) for m in TYPE_RE.finditer(js)}
    for m in CLASS_RE.finditer(js):
        cls, base, body = m.group(1), m.group(2), m.group(3)
        if cls not in types:
            continue
        synth = SYNTH_RE.search(body)
        if not synth:
            raise SystemExit(f"provider-schema: {types[cls]}: no synthesizeHclAttributes() found")
        args = mod.entries(synth.group(1), mod.required.get(cls + "Config", set()), set())
        readable = sorted(set(GETTER_RE.findall(body)) | set(args))
        yield KIND[base], types[cls], {"args": args, "readable": readable}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tarball", help="the npm pack output, e.g. cdktf-provider-google-16.12.1.tgz")
    ap.add_argument("out", help="where to write the JSON schema")
    a = ap.parse_args()

    out = {"resources": {}, "data_sources": {}, "provider": None}
    pkg = None
    module_re = re.compile(r"^package/lib/([^/]+)/index\.(js|d\.ts)$")
    pending = {}
    with tarfile.open(a.tarball, "r:gz") as tar:
        for member in tar:
            if member.name == "package/package.json":
                pkg = json.load(tar.extractfile(member))
                continue
            m = module_re.match(member.name)
            if not m:
                continue
            files = pending.setdefault(m.group(1), {})
            files[m.group(2)] = tar.extractfile(member).read().decode("utf-8")
            if len(files) < 2:
                continue
            del pending[m.group(1)]
            for kind, tf_type, node in parse_module(files["js"], files["d.ts"]):
                if kind == "provider":
                    out["provider"] = node
                else:
                    out[kind][tf_type] = node
    if any("js" in f for f in pending.values()):
        raise SystemExit(f"provider-schema: index.js without index.d.ts in {sorted(pending)[:5]}")
    if pkg is None:
        raise SystemExit("provider-schema: package.json missing from tarball")
    out["package"] = pkg["name"]
    out["package_version"] = pkg["version"]
    out["provider_version"] = pkg.get("cdktf", {}).get("provider", {}).get("version")

    # Sanity: the extraction must find arguments we know exist, or the package
    # layout changed and every later check would be meaningless.
    def arg(rtype, *path):
        node = out["resources"][rtype]
        for p in path[:-1]:
            node = node["args"][p]["node"]
        return node["args"][path[-1]]

    try:
        assert arg("google_cloud_run_v2_service", "template", "containers", "env", "name")["block"] is False
        assert arg("google_cloud_run_v2_service", "template", "containers", "env")["block"] is True
        assert arg("google_pubsub_subscription", "push_config", "oidc_token", "audience")
        assert arg("google_pubsub_subscription", "dead_letter_policy", "max_delivery_attempts")
        assert arg("google_cloud_run_v2_service", "location")["required"] is True
        assert arg("google_cloud_run_v2_service", "template")["required"] is True
        assert arg("google_cloud_run_v2_service", "template", "containers", "image")["required"] is True
        assert arg("google_cloud_run_v2_service", "template", "containers", "name")["required"] is False
        assert arg("google_pubsub_subscription", "topic")["required"] is True
        assert arg("google_pubsub_subscription", "dead_letter_policy", "max_delivery_attempts")["required"] is False
        assert arg("google_monitoring_alert_policy", "conditions", "condition_threshold", "comparison")["required"]
        assert "uri" in out["resources"]["google_cloud_run_v2_service"]["readable"]
        assert "number" in out["data_sources"]["google_project"]["readable"]
        assert "project" in out["provider"]["args"]
        assert len(out["resources"]) > 500 and len(out["data_sources"]) > 100
        if out["package"].endswith("-beta"):
            # The one resource infra/ takes from google-beta.
            assert "email" in out["resources"]["google_project_service_identity"]["readable"]
    except (AssertionError, KeyError, TypeError) as e:
        raise SystemExit(f"provider-schema: extraction sanity check failed ({e!r}); package layout changed?")

    with open(a.out, "w") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=True)
    print(
        f"provider-schema: {out['package']}@{out['package_version']} (google provider {out['provider_version']}): "
        f"{len(out['resources'])} resources, {len(out['data_sources'])} data sources"
    )


if __name__ == "__main__":
    sys.exit(main())
