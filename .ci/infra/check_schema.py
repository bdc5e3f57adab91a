#!/usr/bin/env python3
"""Check provider-schema: the closest thing to `terraform validate` that works offline.

Against the google and google-beta provider schemas extracted by provider_schema.py
it checks, in every module under infra/:
* each resource and data source type exists (in google-beta's schema for those
  with `provider = google-beta`, in google's for the rest);
* each argument and nested block name exists where it is used, is written as a
  block if and only if the schema has a block there (`x { }` versus `x = ...`),
  `dynamic "x"` blocks included; required arguments are present; `id` is not set;
* each reference `google_x.name.attr` / `data.google_x.name.attr` names a declared
  resource and an attribute the type has;
* each `var.x` / `local.x` is declared, each declared variable is used;
* each `module` call passes only the module's variables and all its required ones,
  and each `module.m.out` names an output the module declares;
* each `lifecycle { ignore_changes = [...] }` path names attributes and blocks the
  resource has, and indexes only lists of blocks ([0]) and maps (["key"]);
* each `moved` block moves a resource this module no longer declares (`from`, a
  type the schema has) to one it declares, or that a module it calls declares
  (`to`: `TYPE.NAME` or `module.CALL.TYPE.NAME`);
* the provider blocks' arguments exist; versions.tf pins each provider to the
  version whose schema this is.
Usage: check_schema.py SCHEMA.json BETA_SCHEMA.json [infra]
"""

import difflib
import json
import pathlib
import re
import sys

import tfload

CHECK = "provider-schema"

META = {
    "resource": {"count", "for_each", "provider", "depends_on", "lifecycle", "connection", "provisioner"},
    "data": {"count", "for_each", "provider", "depends_on", "lifecycle"},
}
LIFECYCLE = {"create_before_destroy", "prevent_destroy", "ignore_changes", "replace_triggered_by", "precondition", "postcondition"}
DYNAMIC = {"for_each", "iterator", "labels", "content"}
MODULE_META = {"source", "version", "count", "for_each", "providers", "depends_on"}
VARIABLE_ARGS = {"type", "default", "description", "validation", "sensitive", "nullable", "ephemeral"}
OUTPUT_ARGS = {"value", "description", "sensitive", "depends_on", "precondition", "ephemeral"}

REF_RE = re.compile(
    r"(?<![\w.\"/-])(data\.)?(google_[a-z0-9_]+)\.([A-Za-z_][\w-]*)(?:\[[^\]]*\])?(?:\.([A-Za-z_]\w*))?"
)
MODULE_REF_RE = re.compile(r"(?<![\w.])module\.([A-Za-z_][\w-]*)(?:\[[^\]]*\])?(?:\.([A-Za-z_]\w*))?")


# One step of an ignore_changes path: `name`, `[0]` or `["key"]`.
PATH_STEP_RE = re.compile(r'\.?([A-Za-z_][\w-]*)|\[(\d+)\]|\["([^"]*)"\]')
BETA = "google-beta"


class Checker:
    def __init__(self, schema, beta):
        self.schema = schema
        self.beta = beta
        self.errors = []
        self.checked = {"resources": 0, "data sources": 0, "arguments": 0, "references": 0}

    def err(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    def suggest(self, name, options):
        close = difflib.get_close_matches(name, list(options), n=1)
        return f" (did you mean `{close[0]}`?)" if close else ""

    def ignore_path(self, raw, node, where):
        """One ignore_changes entry against the resource's schema node."""
        path = tfload.unquote(raw)
        if path.startswith("${") and path.endswith("}"):
            path = path[2:-1]
        steps, pos = [], 0
        while pos < len(path):
            m = PATH_STEP_RE.match(path, pos)
            if not m or m.end() == pos:
                self.err(where, f"ignore_changes entry `{path}` is not a path")
                return
            steps.append(m.groups())
            pos = m.end()
        spec, kind = None, "resource"
        for name, index, key in steps:
            if name is not None:
                if kind != "resource":
                    self.err(where, f"ignore_changes `{path}`: `{name}` follows a {kind}")
                    return
                spec = node["args"].get(name)
                if spec is None:
                    self.err(where, f"ignore_changes `{path}`: no attribute or block `{name}`{self.suggest(name, node['args'])}")
                    return
                kind = "block list" if spec["block"] and spec["node"] else spec["type"]
            elif index is not None:
                if kind != "block list":
                    self.err(where, f"ignore_changes `{path}`: [{index}] indexes a {kind}, not a list of blocks")
                    return
                node, kind = spec["node"], "resource"
            else:
                if kind != "map":
                    self.err(where, f"ignore_changes `{path}`: [\"{key}\"] indexes a {kind}, not a map")
                    return
                kind = "map value"

    def body(self, body, node, where, top_meta=()):
        present = set()
        for key, value in tfload.items(body):
            if key in top_meta:
                if key == "lifecycle":
                    for lc in value if isinstance(value, list) else []:
                        for k, v in tfload.items(lc):
                            if k not in LIFECYCLE:
                                self.err(where, f"lifecycle has no argument `{k}`")
                            elif k == "ignore_changes" and isinstance(v, list):
                                for entry in v:
                                    self.ignore_path(entry, node, where)
                continue
            if key == "dynamic":
                for item in value:
                    for label, dyn in tfload.items(item):
                        name = tfload.unquote(label)
                        present.add(name)
                        self.nested(name, dyn, node, f"{where}.dynamic[{name}]", dynamic=True)
                continue
            if top_meta and key == "id":
                self.err(where, "`id` is computed; it cannot be set")
                continue
            present.add(key)
            self.nested(key, value, node, where)
        for name, spec in node["args"].items():
            if spec["required"] and name not in present:
                self.err(where, f"required argument `{name}` is missing")

    def nested(self, key, value, node, where, dynamic=False):
        spec = node["args"].get(key)
        self.checked["arguments"] += 1
        if spec is None:
            self.err(where, f"unknown argument or block `{key}`{self.suggest(key, node['args'])}")
            return
        if dynamic:
            if not spec["block"]:
                self.err(where, f"`{key}` is an argument, not a block: it cannot be `dynamic`")
                return
            for k, _ in tfload.items(value):
                if k not in DYNAMIC:
                    self.err(where, f"a dynamic block has no argument `{k}`")
            if spec["node"]:
                for content in value.get("content", []):
                    self.body(content, spec["node"], f"{where}.content")
            return
        as_block = tfload.is_block_list(value)
        if spec["block"] and not as_block:
            self.err(where, f"`{key}` is a block: write `{key} {{ ... }}`, not `{key} = ...`")
        elif not spec["block"] and as_block:
            self.err(where, f"`{key}` is an argument: write `{key} = ...`, not `{key} {{ ... }}`")
        elif as_block and spec["node"]:
            for i, item in enumerate(value):
                self.body(item, spec["node"], f"{where}.{key}[{i}]")

    def module(self, mod, all_modules):
        declared = {}
        for path, (rtype, name), body in mod.blocks("resource"):
            schema = self.beta if tfload.unquote(body.get("provider", "")) == BETA else self.schema
            node = schema["resources"].get(rtype)
            where = f"{path}: resource {rtype}.{name}"
            self.checked["resources"] += 1
            if node is None:
                self.err(where, f"unknown resource type in {schema['package']}{self.suggest(rtype, schema['resources'])}")
                continue
            declared[(False, rtype, name)] = node
            self.body(body, node, where, META["resource"])
        for path, (dtype, name), body in mod.blocks("data"):
            schema = self.beta if tfload.unquote(body.get("provider", "")) == BETA else self.schema
            node = schema["data_sources"].get(dtype)
            where = f"{path}: data {dtype}.{name}"
            self.checked["data sources"] += 1
            if node is None:
                self.err(where, f"unknown data source type in {schema['package']}{self.suggest(dtype, schema['data_sources'])}")
                continue
            declared[(True, dtype, name)] = node
            self.body(body, node, where, META["data"])
        for path, (pname,), body in mod.blocks("provider"):
            if pname == "google":
                self.body(body, self.schema["provider"], f"{path}: provider google", {"alias"})
            elif pname == BETA:
                self.body(body, self.beta["provider"], f"{path}: provider {BETA}", {"alias"})
            else:
                self.err(f"{path}: provider {pname}", "only the google and google-beta providers are checked here")

        variables = mod.variables()
        for path, (vname,), body in mod.blocks("variable"):
            for k, _ in tfload.items(body):
                if k not in VARIABLE_ARGS:
                    self.err(f"{path}: variable {vname}", f"variables have no argument `{k}`")
        for path, (oname,), body in mod.blocks("output"):
            for k, _ in tfload.items(body):
                if k not in OUTPUT_ARGS:
                    self.err(f"{path}: output {oname}", f"outputs have no argument `{k}`")
            if "value" not in body:
                self.err(f"{path}: output {oname}", "output has no `value`")
        calls = {labels[0]: (path, body) for path, labels, body in mod.blocks("module")}
        for cname, (path, body) in calls.items():
            source = tfload.unquote(body.get("source", ""))
            target = all_modules.get((mod.dir / source).resolve()) if source.startswith(".") else None
            where = f"{path}: module {cname}"
            if target is None:
                self.err(where, f"source {source!r} is not a local module under infra/")
                continue
            tvars = target.variables()
            for k, _ in tfload.items(body):
                if k in MODULE_META:
                    continue
                if k not in tvars:
                    self.err(where, f"module has no variable `{k}`{self.suggest(k, tvars)}")
            for vname, vbody in tvars.items():
                if "default" not in vbody and vname not in body:
                    self.err(where, f"required variable `{vname}` is not passed")

        # `moved` blocks name addresses, not references: checked on their own.
        for path, parsed in mod.files.items():
            for mv in parsed.get("moved", []):
                self.moved(mv, path, mod, calls, declared, all_modules)

        # References, declarations and uses.
        locals_ = mod.locals()
        used_vars = set()
        for path, parsed in mod.files.items():
            parsed = {k: v for k, v in tfload.items(parsed) if k != "moved"}
            # A variable's own block (its validation) does not count as a use of it.
            uses = {k: v for k, v in tfload.items(parsed) if k != "variable"}
            for s in tfload.strings(uses):
                used_vars.update(tfload.VAR_RE.findall(s))
            for s in tfload.strings(parsed):
                for lname in tfload.LOCAL_RE.findall(s):
                    if lname not in locals_:
                        self.err(str(path), f"local.{lname} is not declared")
                for v in tfload.VAR_RE.findall(s):
                    if v not in variables:
                        self.err(str(path), f"var.{v} is not declared")
                for is_data, rtype, name, attr in REF_RE.findall(s):
                    self.checked["references"] += 1
                    node = declared.get((bool(is_data), rtype, name))
                    ref = f"{is_data}{rtype}.{name}"
                    if node is None:
                        self.err(str(path), f"reference to undeclared {ref}")
                    elif attr and attr not in node["readable"]:
                        self.err(str(path), f"{ref} has no attribute `{attr}`{self.suggest(attr, node['readable'])}")
                for cname, out in MODULE_REF_RE.findall(s):
                    if cname not in calls:
                        self.err(str(path), f"reference to undeclared module.{cname}")
                        continue
                    src = tfload.unquote(calls[cname][1].get("source", ""))
                    target = all_modules.get((mod.dir / src).resolve())
                    outs = {labels[0] for _, labels, _ in target.blocks("output")} if target else set()
                    if out and out not in outs:
                        self.err(str(path), f"module.{cname} has no output `{out}`")
        for v in sorted(set(variables) - used_vars):
            self.err(str(mod.dir), f"variable `{v}` is declared but never used")

    def moved(self, mv, path, mod, calls, declared, all_modules):
        def address(key):
            raw = tfload.unquote(str(mv.get(key, "")))
            return raw[2:-1] if raw.startswith("${") and raw.endswith("}") else raw

        src, dst = address("from"), address("to")
        where = f"{path}: moved {src} -> {dst}"
        m = re.fullmatch(r"(google_[a-z0-9_]+)\.([A-Za-z_][\w-]*)", src)
        if not m:
            self.err(where, "`from` must be TYPE.NAME of a resource of this module")
        elif m.group(1) not in self.schema["resources"]:
            self.err(where, f"`from`: no resource type {m.group(1)}")
        elif (False, m.group(1), m.group(2)) in declared:
            self.err(where, "`from` is still declared here: nothing moves")
        m = re.fullmatch(r"(?:module\.([A-Za-z_][\w-]*)\.)?(google_[a-z0-9_]+)\.([A-Za-z_][\w-]*)", dst)
        if not m:
            self.err(where, "`to` must be TYPE.NAME or module.CALL.TYPE.NAME")
            return
        call, rtype, name = m.groups()
        if call is None:
            if (False, rtype, name) not in declared:
                self.err(where, f"`to`: {rtype}.{name} is not declared here")
            return
        if call not in calls:
            self.err(where, f"`to`: no module call `{call}`")
            return
        src_dir = tfload.unquote(calls[call][1].get("source", ""))
        target = all_modules.get((mod.dir / src_dir).resolve())
        if target is None or (rtype, name) not in {labels for _, labels, _ in target.blocks("resource")}:
            self.err(where, f"`to`: module {call} ({src_dir}) declares no {rtype}.{name}")

    def versions(self, root_mod):
        wants = {"google": self.schema, BETA: self.beta}
        pins = {name: [] for name in wants}
        for path, _, body in root_mod.blocks("terraform"):
            for rp in body.get("required_providers", []):
                for name in wants:
                    spec = rp.get(name)
                    if isinstance(spec, dict):
                        pins[name].append((path, tfload.unquote(spec.get("version", ""))))
        for name, schema in wants.items():
            want = schema["provider_version"]
            if not pins[name]:
                self.err(str(root_mod.dir), f"no required_providers.{name} version pin")
            for path, pin in pins[name]:
                if pin.strip().lstrip("=").strip() != want:
                    self.err(
                        str(path),
                        f"{name} provider pinned to {pin!r}, but the schema checked is {want}: pin \"{want}\" or bump the npm package",
                    )


def main(schema_path, beta_path, root="infra"):
    schema = json.load(open(schema_path))
    beta = json.load(open(beta_path))
    mods = {d.resolve(): m for d, m in tfload.modules(root).items()}
    c = Checker(schema, beta)
    root_mod = mods.get(pathlib.Path(root).resolve())
    if root_mod is None:
        print(f"{CHECK}: no .tf files in {root}/", file=sys.stderr)
        return 1
    for mod in mods.values():
        c.module(mod, mods)
    c.versions(root_mod)
    for e in c.errors:
        tfload.fail(CHECK, e)
    counts = ", ".join(f"{n} {k}" for k, n in c.checked.items())
    print(
        f"{CHECK}: {len(mods)} modules against {schema['package']}@{schema['package_version']} and "
        f"{beta['package']}@{beta['package_version']} (providers {schema['provider_version']}, "
        f"{beta['provider_version']}): {counts} checked, {len(c.errors)} problems"
    )
    return 1 if c.errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
