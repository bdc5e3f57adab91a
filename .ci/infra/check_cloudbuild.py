#!/usr/bin/env python3
"""Check cloudbuild-yaml: both Cloud Build configs parse and have the shape Cloud Build and cutover need.

For each file: valid YAML; top-level keys are Build fields; `steps` is a non-empty
list; every step has `name` (the builder image, a string) and `args` (a list of
strings) and only known step fields; user substitutions match ^_[A-Z0-9_]+$ and
every `$_X` / `${_X}` used is declared under `substitutions`.
Per file role:
* cloudbuild.yaml (cutover's own): has a `cargo test` step, pushes and deploys an
  image, and does not declare _SERVICE_NAME / _DEPLOY_REGION (cutover would
  otherwise take its own builds for a managed service's release);
* examples/app-cloudbuild.yaml: declares _SERVICE_NAME and _DEPLOY_REGION (cutover
  reads them from the build's completion message) and has the step
  `gcloud run deploy $_SERVICE_NAME --no-traffic --region $_DEPLOY_REGION --image ...`.
Usage: check_cloudbuild.py cloudbuild.yaml examples/app-cloudbuild.yaml
"""

import re
import sys

import yaml

CHECK = "cloudbuild-yaml"

BUILD_FIELDS = {
    "steps", "timeout", "queueTtl", "logsBucket", "options", "substitutions", "tags",
    "serviceAccount", "secrets", "availableSecrets", "artifacts", "images",
}
STEP_FIELDS = {
    "name", "args", "env", "dir", "id", "waitFor", "entrypoint", "secretEnv", "volumes",
    "timeout", "script", "automapSubstitutions", "allowFailure", "allowExitCodes",
}
USER_SUB_RE = re.compile(r"\$\{?(_[A-Za-z0-9_]+)\}?")
CUTOVER_SUBS = ("_SERVICE_NAME", "_DEPLOY_REGION")


def words(step):
    """The step's command line as one string: entrypoint + args."""
    return " ".join([str(step.get("entrypoint", ""))] + [str(a) for a in step.get("args", [])]).strip()


def check(path, errors):
    def err(msg):
        errors.append(f"{path}: {msg}")

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        err(f"not valid YAML: {e}")
        return None
    if not isinstance(doc, dict):
        err("top level must be a mapping")
        return None
    for k in doc:
        if k not in BUILD_FIELDS:
            err(f"unknown top-level field {k!r}")
    steps = doc.get("steps")
    if not isinstance(steps, list) or not steps:
        err("`steps` must be a non-empty list")
        return None
    subs = doc.get("substitutions") or {}
    if not isinstance(subs, dict):
        err("`substitutions` must be a mapping")
        subs = {}
    for k in subs:
        if not re.fullmatch(r"_[A-Z0-9_]+", str(k)):
            err(f"substitution {k!r} must match ^_[A-Z0-9_]+$")
    for i, step in enumerate(steps):
        where = f"step {i} ({step.get('id', '?') if isinstance(step, dict) else '?'})"
        if not isinstance(step, dict):
            err(f"{where}: must be a mapping")
            continue
        for k in step:
            if k not in STEP_FIELDS:
                err(f"{where}: unknown field {k!r}")
        if not isinstance(step.get("name"), str) or not step["name"].strip():
            err(f"{where}: needs `name` (the builder image)")
        args = step.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, (str, int)) for a in args):
            err(f"{where}: needs `args`, a non-empty list of strings")
    for used in sorted(set(USER_SUB_RE.findall(yaml.safe_dump(steps)))):
        if used not in subs:
            err(f"substitution {used} is used but not declared under `substitutions`")
    return doc


def main(own, example):
    errors = []
    own_doc = check(own, errors)
    if own_doc:
        steps = [words(s) for s in own_doc["steps"] if isinstance(s, dict)]
        if not any(re.search(r"\bcargo\b.*\btest\b", w) for w in steps):
            errors.append(f"{own}: no `cargo test` step")
        if not any(re.search(r"\bpush\b", w) for w in steps):
            errors.append(f"{own}: no step pushes the image")
        if not any(re.search(r"\bgcloud\b.*\brun\b.*\b(deploy|services update)\b", w) for w in steps):
            errors.append(f"{own}: no step deploys cutover")
        for s in CUTOVER_SUBS:
            if s in (own_doc.get("substitutions") or {}):
                errors.append(f"{own}: must not declare {s}: cutover would roll out its own builds")
    ex_doc = check(example, errors)
    if ex_doc:
        for s in CUTOVER_SUBS:
            if s not in (ex_doc.get("substitutions") or {}):
                errors.append(f"{example}: must declare {s} (cutover reads it from the build message)")
        deploy = re.compile(
            r"\bgcloud run deploy \$\{?_SERVICE_NAME\}? --no-traffic --region[= ]\$\{?_DEPLOY_REGION\}? --image[= ]\S+"
        )
        if not any(deploy.search(words(s)) for s in ex_doc["steps"] if isinstance(s, dict)):
            errors.append(f"{example}: no step `gcloud run deploy $_SERVICE_NAME --no-traffic --region $_DEPLOY_REGION --image ...`")
    for e in errors:
        print(f"{CHECK}: {e}")
    print(f"{CHECK}: {own} and {example} read, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    sys.exit(main(*sys.argv[1:]))
