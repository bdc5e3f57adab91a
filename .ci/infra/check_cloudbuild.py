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
  reads them from the build's completion message); every `gcloud run deploy` in it
  names the service, its region and the runtime account (--service-account); and
  its deploy step, run by bash with the substitutions' defaults and a stand-in
  `gcloud` on PATH, does the right thing in each case:
    - the service exists: one `gcloud run deploy $_SERVICE_NAME --no-traffic ...`;
    - Cloud Run says it does not ("Cannot find service"): one deploy without
      --no-traffic (gcloud refuses --no-traffic on creation; the first revision
      serves 100%, which cutover leaves alone);
    - reading it fails otherwise (e.g. permission denied): no deploy, build fails.
Usage: check_cloudbuild.py cloudbuild.yaml examples/app-cloudbuild.yaml
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

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


# The stand-in gcloud: logs its arguments, one line per call, and answers
# `run services describe` as the scenario says (the texts are gcloud's own).
FAKE_GCLOUD = """#!/bin/sh
printf '%s\\n' "$*" >>"$GCLOUD_LOG"
case "$*" in
  "run services describe "*)
    case "$SCENARIO" in
      exists) echo "apiVersion: serving.knative.dev/v1"; exit 0 ;;
      missing) echo "ERROR: (gcloud.run.services.describe) Cannot find service [$4]" >&2; exit 1 ;;
      *) echo "ERROR: (gcloud.run.services.describe) PERMISSION_DENIED: Permission 'run.services.get' denied" >&2; exit 1 ;;
    esac ;;
esac
exit 0
"""
BUILTINS = {"PROJECT_ID": "example-project", "BUILD_ID": "0d97c63e-a349-4bf7-80d0-8f6e21786d87"}


def render(text, subs):
    """Cloud Build's substitution of `$_X`, `${_X}` and the built-ins used here."""
    values = {**BUILTINS, **{k: str(v) for k, v in subs.items()}}
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def deploy_calls(log):
    return [line for line in log if line.startswith("run deploy ")]


def simulate(doc, example, errors):
    """Runs the example's deploy step per scenario with the stand-in gcloud."""
    subs = doc.get("substitutions") or {}
    steps = [s for s in doc["steps"] if isinstance(s, dict) and "gcloud run deploy" in render(words(s), subs)]
    if len(steps) != 1:
        errors.append(f"{example}: expected one step that runs `gcloud run deploy`, found {len(steps)}")
        return
    step = steps[0]
    if step.get("entrypoint") != "bash":
        errors.append(f"{example}: the deploy step must be a bash script (it decides between creating and --no-traffic)")
        return
    bash = shutil.which("bash")
    if bash is None:
        errors.append("bash not found: cannot run the deploy step")
        return
    argv = [bash] + [render(str(a), subs) for a in step["args"]]
    service = str(subs.get("_SERVICE_NAME"))
    want = {
        "exists": (0, lambda d: len(d) == 1 and d[0].startswith(f"run deploy {service} --no-traffic ")),
        "missing": (0, lambda d: len(d) == 1 and "--no-traffic" not in d[0].split()),
        "denied": (1, lambda d: not d),
    }
    with tempfile.TemporaryDirectory() as tmp:
        fake = os.path.join(tmp, "bin", "gcloud")
        os.makedirs(os.path.dirname(fake))
        with open(fake, "w") as f:
            f.write(FAKE_GCLOUD)
        os.chmod(fake, 0o755)
        for scenario, (code, ok) in want.items():
            work = os.path.join(tmp, scenario)
            os.makedirs(work)
            log = os.path.join(tmp, f"{scenario}.log")
            env = {**os.environ, "PATH": f"{os.path.dirname(fake)}:{os.environ.get('PATH', '')}",
                   "SCENARIO": scenario, "GCLOUD_LOG": log}
            r = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=30)
            calls = open(log).read().splitlines() if os.path.exists(log) else []
            deploys = deploy_calls(calls)
            if (r.returncode == 0) != (code == 0) or not ok(deploys):
                errors.append(
                    f"{example}: deploy step, service {scenario}: exit {r.returncode}, deploys {deploys or 'none'}"
                    f" (stderr: {r.stderr.strip()[:200]!r})"
                )


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
        text = "\n".join(words(s) for s in ex_doc["steps"] if isinstance(s, dict))
        deploys = re.findall(r"\bgcloud run deploy [^\n]*", text)
        if not deploys:
            errors.append(f"{example}: no `gcloud run deploy`")
        for d in deploys:
            for need in (r"deploy \$\{?_SERVICE_NAME\}? ", r"--region[= ]\$\{?_DEPLOY_REGION\}?", r"--image[= ]\S+",
                         r"--service-account[= ]\S+"):
                if not re.search(need, d):
                    errors.append(f"{example}: `{d[:60]}...` lacks {need!r}")
        simulate(ex_doc, example, errors)
    for e in errors:
        print(f"{CHECK}: {e}")
    print(f"{CHECK}: {own} and {example} read, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    sys.exit(main(*sys.argv[1:]))
