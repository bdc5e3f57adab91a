#!/usr/bin/env python3
"""Check env-agreement: the environment Terraform gives cutover matches what cutover reads.

cutover's settings are clap arguments in src/config.rs, each with `env = "NAME"`, and the
rollout policy's settings, one line each of the table in src/decision/policy.rs
(`field: Kind = "default", "CUTOVER_NAME"[, "cutover.dev/annotation"];`) from which config.rs
generates its policy flags.
Terraform sets the container environment in google_cloud_run_v2_service resources,
either as literal `env { name = "..." }` blocks or as `dynamic "env"` blocks whose
for_each is (a `for` over) a map in `locals`; the map's keys are the names.

Fails when:
* Terraform sets a name cutover does not read (a misspelt CUTOVER_* included);
* Terraform sets one of FORBIDDEN;
* cutover reads a CUTOVER_* name that Terraform cannot set, unless it is listed in
  NOT_SET_CUTOVER with the reason;
* a default in config.rs (`default_value = "..."`, `default_value_t = <literal>`,
  `default_values_t = [...]`) differs from the default of the Terraform variable
  the name is set from (only where the value is `var.x`, `tostring(var.x)` or
  `join(",", var.x)`; anything else is derived and not compared).
Usage: check_env.py [src/config.rs] [infra]
"""

import difflib
import pathlib
import re
import sys

import tfload

CHECK = "env-agreement"

# Names cutover reads that Terraform must never set, and why.
FORBIDDEN = {
    "PORT": "Cloud Run sets PORT from the container port; setting it is rejected by Cloud Run",
    "GCE_METADATA_HOST": "a test hook pointing cutover at a fake metadata server; on Cloud Run the real one is used",
    "PUBSUB_EMULATOR_HOST": "a test hook sending events to the Pub/Sub emulator without credentials; on Cloud Run events go to Pub/Sub",
}
# CUTOVER_* names cutover reads that Terraform deliberately does not offer, and why.
# Empty: every CUTOVER_* setting is a variable in infra/variables.tf.
NOT_SET_CUTOVER = {}

ENV_RE = re.compile(r'\benv\s*=\s*"([A-Za-z_][A-Za-z0-9_]*)"')
STR_DEFAULT_RE = re.compile(r'\bdefault_value\s*=\s*"((?:[^"\\]|\\.)*)"')
LIT_DEFAULT_RE = re.compile(r"\bdefault_value_t\s*=\s*(-?[0-9][0-9_.]*|true|false)\s*(?:,|$)")
LIST_DEFAULT_RE = re.compile(r"\bdefault_values(?:_t)?\s*=\s*\[([^\]]*)\]")
ATTR_START_RE = re.compile(r"#\[\s*(?:arg|clap)\s*\(")
POLICY_ROW_RE = re.compile(
    r'^\s*\w+\s*:\s*\w+\s*=\s*"((?:[^"\\]|\\.)*)"\s*,\s*"([A-Z][A-Z0-9_]*)"', re.M
)
POLICY_RS = "src/decision/policy.rs"


def attributes(text):
    """The text inside each #[arg(...)] / #[clap(...)], parentheses balanced."""
    for m in ATTR_START_RE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == '"':  # skip string literals
                i += 1
                while i < len(text) and text[i] != '"':
                    i += 2 if text[i] == "\\" else 1
            elif text[i] == "(":
                depth += 1
            elif text[i] == ")":
                depth -= 1
            i += 1
        yield text[m.end() : i - 1]


def cutover_reads(config_text):
    """{name: default or None} for every `env = "NAME"` in config.rs."""
    names = {n: None for n in ENV_RE.findall(config_text)}
    for attr in attributes(config_text):
        env = ENV_RE.search(attr)
        if not env:
            continue
        m = STR_DEFAULT_RE.search(attr) or LIT_DEFAULT_RE.search(attr)
        if m:
            names[env.group(1)] = m.group(1)
            continue
        m = LIST_DEFAULT_RE.search(attr)
        if m:
            items = [x.strip().strip('"') for x in m.group(1).split(",") if x.strip()]
            names[env.group(1)] = ",".join(items)
    return names


def policy_reads(policy_text):
    """{name: default} for every row of the policy settings table."""
    return {env: default for default, env in POLICY_ROW_RE.findall(policy_text)}


def terraform_sets(mods):
    """{name: (where, value expression or None)} for every env var any Cloud Run service sets."""
    out, errors = {}, []

    def walk(body, mod, where):
        for key, value in tfload.items(body):
            if key == "env" and tfload.is_block_list(value):
                for e in value:
                    name = tfload.literal(e.get("name"))
                    if not isinstance(name, str):
                        errors.append(f"{where}: env name {e.get('name')!r} is not a literal string")
                    else:
                        out[name] = (where, e.get("value"))
            elif key == "dynamic":
                for item in value:
                    for label, dyn in tfload.items(item):
                        if tfload.unquote(label) == "env":
                            dynamic_env(dyn, mod, where)
            elif tfload.is_block_list(value):
                for b in value:
                    walk(b, mod, where)

    def dynamic_env(dyn, mod, where):
        expr = str(dyn.get("for_each", ""))
        refs = tfload.LOCAL_RE.findall(expr)
        env_map = mod.locals().get(refs[0]) if len(refs) == 1 else None
        if not isinstance(env_map, dict):
            errors.append(f"{where}: dynamic \"env\" for_each must iterate one map in locals, got {expr!r}")
            return
        for k, v in tfload.items(env_map):
            out[tfload.unquote(k)] = (f"{where} (local.{refs[0]})", v)

    for mod in mods.values():
        for path, (rtype, name), body in mod.blocks("resource"):
            if rtype == "google_cloud_run_v2_service":
                walk(body, mod, f"{path}: {rtype}.{name}")
    return out, errors


FORMS = [
    re.compile(r"^\$\{var\.(\w+)\}$"),
    re.compile(r"^\$\{tostring\(var\.(\w+)\)\}$"),
    re.compile(r'^\$\{join\(",",\s*var\.(\w+)\)\}$'),
    re.compile(r'^\$\{join\(",",\s*\[for (\w+) in var\.(\w+)\s*:\s*tostring\(\1\)\]\)\}$'),
]


def terraform_default(expr, variables):
    """(variable, default as cutover would see it) if expr is a plain use of one variable."""
    if not isinstance(expr, str):
        return None
    for form in FORMS:
        m = form.match(expr)
        if m:
            var = m.groups()[-1]
            body = variables.get(var)
            if body is None or "default" not in body:
                return None
            d = tfload.literal(body["default"])
            if d is None:
                return None
            if isinstance(d, list):
                d = ",".join(str(x) for x in d)
            return var, str(d).lower() if isinstance(d, bool) else str(d)
    return None


def same(a, b):
    try:
        return float(a.replace("_", "")) == float(b.replace("_", ""))
    except ValueError:
        return a.strip() == b.strip()


def main(config="src/config.rs", root="infra"):
    config = pathlib.Path(config)
    policy = config.parent / pathlib.Path(POLICY_RS).relative_to("src")
    reads = {}
    for path, parse, what in (
        (config, cutover_reads, "`env = \"...\"`"),
        (policy, policy_reads, "settings table rows"),
    ):
        if not path.exists():
            tfload.fail(CHECK, f"{path} not found: cannot tell which variables cutover reads")
            return 1
        found = parse(path.read_text(encoding="utf-8"))
        if not found:
            tfload.fail(CHECK, f"no {what} in {path}")
            return 1
        reads.update(found)
    mods = tfload.modules(root)
    sets, errors = terraform_sets(mods)
    variables = {}
    for mod in mods.values():
        if mod.dir.resolve() == pathlib.Path(root).resolve():
            variables = mod.variables()

    for name, (where, _) in sorted(sets.items()):
        if name in FORBIDDEN:
            errors.append(f"{where}: sets {name}, which it must not: {FORBIDDEN[name]}")
        elif name not in reads:
            close = difflib.get_close_matches(name, list(reads), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            errors.append(f"{where}: sets {name}, which cutover does not read ({config}){hint}")
    for name in sorted(reads):
        if name.startswith("CUTOVER_") and name not in sets and name not in NOT_SET_CUTOVER:
            errors.append(f"cutover reads {name} ({config}) but Terraform cannot set it: add a variable and an entry in the env map, or list it in NOT_SET_CUTOVER with the reason")

    compared = 0
    for name, (where, expr) in sorted(sets.items()):
        if reads.get(name) is None:
            continue
        td = terraform_default(expr, variables)
        if td is None:
            continue
        compared += 1
        var, tf_default = td
        if not same(tf_default, reads[name]):
            errors.append(f"{name}: cutover's default is {reads[name]!r} ({config}) but variable {var} defaults to {tf_default!r}")

    for e in errors:
        tfload.fail(CHECK, e)
    cut = sorted(n for n in reads if n.startswith("CUTOVER_"))
    print(
        f"{CHECK}: cutover reads {len(reads)} names ({len(cut)} CUTOVER_*), Terraform sets {len(sets)}, "
        f"{compared} defaults compared, {len(errors)} problems"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
