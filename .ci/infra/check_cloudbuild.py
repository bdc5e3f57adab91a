#!/usr/bin/env python3
"""Check cloudbuild-yaml: the Cloud Build configs parse and have the shape Cloud Build and cutover need.

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
* examples/appengine-cloudbuild.yaml (an example declaring _APPENGINE_SERVICE):
  declares _APPENGINE_SERVICE and _APPENGINE_VERSION; every `gcloud app deploy`
  deploys --version=${_APPENGINE_VERSION} with --no-promote (never --promote or
  --stop-previous-version), after the step that validates the version; no step
  moves traffic itself (`app services set-traffic`, `app versions migrate`);
  and its validating step, run by bash with the substitutions' defaults
  (expanded as Cloud Build's dynamicSubstitutions does) and an app.yaml per
  scenario, passes a commit's version for the declared service and fails on an
  empty SHORT_SHA (version "v-") and on an app.yaml of another service.
* examples/mig-cloudbuild.yaml (an example declaring _URL_MAP): declares _URL_MAP
  and _CANDIDATE_BACKEND; no step changes a URL map or a backend service (only
  describe / get-health / list); every `rolling-action start-update` names a
  --version=template= and is followed by a `wait-until --stable`; and its roll
  step, run by bash with a stand-in `gcloud` answering the URL map's weights
  and the backend services' groups, rolls exactly the idle backend's instance
  groups (zonal or regional) and waits for each, and rolls nothing and fails
  when a rollout is in progress (both weights above 0), when _CANDIDATE_BACKEND
  names the serving backend, or when the idle backend's groups are NEGs.
Which checks an example gets is decided by the substitutions it declares
(_SERVICE_NAME: Cloud Run, _APPENGINE_SERVICE: App Engine, _URL_MAP: load
balancer); cutover's own cloudbuild.yaml must declare none of them.
Usage: check_cloudbuild.py cloudbuild.yaml EXAMPLE.yaml...
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
APPENGINE_SUBS = ("_APPENGINE_SERVICE", "_APPENGINE_VERSION")
URL_MAP_SUBS = ("_URL_MAP", "_CANDIDATE_BACKEND")


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
BUILTINS = {"PROJECT_ID": "example-project", "BUILD_ID": "0d97c63e-a349-4bf7-80d0-8f6e21786d87",
            "SHORT_SHA": "a017b5e"}
SUB_RE = re.compile(r"\$\$|\$(?:\{(\w+)\}|(\w+))")


def _substitute(text, values):
    return SUB_RE.sub(lambda m: "$" if m.group(0) == "$$" else values.get(m.group(1) or m.group(2), m.group(0)), text)


def render(text, subs, builtins=None, dynamic=False):
    """Cloud Build's substitution of `$_X`, `${_X}` and the built-ins used here;
    `$$` is a literal `$` (a shell variable in a script step). With dynamic
    (options.dynamicSubstitutions), a substitution's value may itself use
    the built-ins and other substitutions, which are expanded first."""
    values = {**(BUILTINS if builtins is None else builtins), **{k: str(v) for k, v in subs.items()}}
    if dynamic:
        for _ in range(3):
            values = {k: _substitute(v, values) for k, v in values.items()}
    return _substitute(text, values)


def is_dynamic(doc):
    return bool((doc.get("options") or {}).get("dynamicSubstitutions"))


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


def check_own(own, errors):
    own_doc = check(own, errors)
    if not own_doc:
        return
    steps = [words(s) for s in own_doc["steps"] if isinstance(s, dict)]
    if not any(re.search(r"\bcargo\b.*\btest\b", w) for w in steps):
        errors.append(f"{own}: no `cargo test` step")
    if not any(re.search(r"\bpush\b", w) for w in steps):
        errors.append(f"{own}: no step pushes the image")
    if not any(re.search(r"\bgcloud\b.*\brun\b.*\b(deploy|services update)\b", w) for w in steps):
        errors.append(f"{own}: no step deploys cutover")
    for s in CUTOVER_SUBS + APPENGINE_SUBS + URL_MAP_SUBS:
        if s in (own_doc.get("substitutions") or {}):
            errors.append(f"{own}: must not declare {s}: cutover would roll out its own builds")


def require_subs(example, doc, names, errors):
    """The example's substitutions, after checking it declares each of names."""
    subs = doc.get("substitutions") or {}
    for s in names:
        if s not in subs:
            errors.append(f"{example}: must declare {s} (cutover reads it from the build message)")
    return subs


def check_cloud_run_example(example, ex_doc, errors):
    require_subs(example, ex_doc, CUTOVER_SUBS, errors)
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


def run_bash_step(step, subs, env_extra, cwd, builtins=None, dynamic=False, path_prepend=None):
    argv = [shutil.which("bash")] + [render(str(a), subs, builtins, dynamic) for a in step["args"]]
    env = {**os.environ, **env_extra}
    if path_prepend:
        env["PATH"] = f"{path_prepend}:{os.environ.get('PATH', '')}"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=30)


def check_appengine_example(example, doc, errors):
    subs = require_subs(example, doc, APPENGINE_SUBS, errors)
    steps = [s for s in doc["steps"] if isinstance(s, dict)]
    texts = [words(s) for s in steps]
    deploy_at = [i for i, w in enumerate(texts) if re.search(r"\bgcloud app deploy\b|^gcloud app deploy\b", w)
                 or (steps[i].get("entrypoint") == "gcloud" and steps[i].get("args", [None])[:2] == ["app", "deploy"])]
    if not deploy_at:
        errors.append(f"{example}: no `gcloud app deploy`")
    for i in deploy_at:
        w = texts[i]
        if not re.search(r"(^|\s)--no-promote(\s|$)", w):
            errors.append(f"{example}: step {i} deploys without --no-promote: the new version would get all traffic at once")
        if re.search(r"(^|\s)--(promote|stop-previous-version)(\s|=|$)", w):
            errors.append(f"{example}: step {i} promotes or stops the serving version: traffic is cutover's")
        if not re.search(r"--version[= ]\$\{?_APPENGINE_VERSION\}?(\s|$)", w):
            errors.append(f"{example}: step {i} must deploy --version=${{_APPENGINE_VERSION}}, the version cutover is told about")
    for i, w in enumerate(texts):
        if re.search(r"\bapp (services set-traffic|versions migrate)\b", w):
            errors.append(f"{example}: step {i} moves App Engine traffic itself: that is cutover's job")
    checks = [i for i, s in enumerate(steps) if s.get("entrypoint") == "bash" and "_APPENGINE_VERSION" in words(s)]
    if len(checks) != 1:
        errors.append(f"{example}: expected one bash step validating _APPENGINE_VERSION, found {len(checks)}")
        return
    if deploy_at and min(deploy_at) < checks[0]:
        errors.append(f"{example}: a deploy runs before the step that validates the version")
    step = steps[checks[0]]
    dynamic = is_dynamic(doc)
    service = str(subs.get("_APPENGINE_SERVICE"))
    other = "other-" + service
    app_yaml = str(subs.get("_APP_YAML", "app.yaml"))
    no_sha = {**BUILTINS, "SHORT_SHA": ""}
    scenarios = {
        # name: (app.yaml content, builtins, must succeed)
        "commit version, declared service": (
            "runtime: python312\n" if service == "default" else f"runtime: python312\nservice: {service}\n", None, True),
        "no SHORT_SHA (version v-)": (f"runtime: python312\nservice: {service}\n", no_sha, False),
        "app.yaml of another service": (f"runtime: python312\nservice: {other}\n", None, False),
    }
    if not dynamic and "${" in str(subs.get("_APPENGINE_VERSION", "")):
        errors.append(f"{example}: _APPENGINE_VERSION uses other substitutions, which needs options.dynamicSubstitutions: true")
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, (content, builtins, ok)) in enumerate(scenarios.items()):
            work = os.path.join(tmp, str(n))
            os.makedirs(work)
            with open(os.path.join(work, app_yaml), "w") as f:
                f.write(content)
            r = run_bash_step(step, subs, {}, work, builtins, dynamic)
            if (r.returncode == 0) != ok:
                errors.append(f"{example}: validating step, {name}: exit {r.returncode}, expected "
                              f"{'success' if ok else 'failure'} (stderr: {r.stderr.strip()[:200]!r})")
    version = render(str(subs.get("_APPENGINE_VERSION", "")), subs, None, dynamic)
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", version):
        errors.append(f"{example}: _APPENGINE_VERSION's default gives {version!r}, not a valid version id")


# The stand-in gcloud of the load-balancer example: answers the URL map's
# weights ($WEIGHTS, csv lines as `--format=csv[no-heading](name,weight)`
# prints them) and each backend service's groups ($GROUPS_<name>, with '-'
# as '_'), logs every call.
FAKE_GCLOUD_LB = """#!/bin/sh
printf '%s\\n' "$*" >>"$GCLOUD_LOG"
case "$*" in
  "compute url-maps describe "*) printf '%b' "$WEIGHTS"; exit 0 ;;
  "compute backend-services describe "*)
    var="GROUPS_$(printf '%s' "$4" | tr '-' '_')"
    eval "printf '%s\\n' \"\\$$var\""; exit 0 ;;
esac
exit 0
"""
ZONAL = "https://www.googleapis.com/compute/v1/projects/example-project/zones/europe-west1-b/instanceGroups/{}-ig"
REGIONAL = "https://www.googleapis.com/compute/v1/projects/example-project/regions/europe-west1/instanceGroups/{}-rig"
NEG = "https://www.googleapis.com/compute/v1/projects/example-project/zones/europe-west1-b/networkEndpointGroups/{}-neg"


def check_url_map_example(example, doc, errors):
    subs = require_subs(example, doc, URL_MAP_SUBS, errors)
    steps = [s for s in doc["steps"] if isinstance(s, dict)]
    text = "\n".join(render(words(s), subs) for s in steps)
    for m in re.finditer(r"\bgcloud compute (url-maps|backend-services) ([a-z-]+)", text):
        if m.group(2) not in ("describe", "get-health", "list"):
            errors.append(f"{example}: `gcloud compute {m.group(1)} {m.group(2)}` changes the load balancer: weights are cutover's")
    updates = re.findall(r"\bgcloud compute instance-groups managed rolling-action start-update [^\n]*", text)
    if not updates:
        errors.append(f"{example}: no `rolling-action start-update`")
    for u in updates:
        if not re.search(r"--version[= ]template=\S+", u):
            errors.append(f"{example}: `{u[:60]}...` lacks --version=template=...")
    if len(re.findall(r"\bwait-until [^\n]*--stable", text)) < len(updates):
        errors.append(f"{example}: every start-update must be followed by `wait-until ... --stable`")
    roll = [s for s in steps if s.get("entrypoint") == "bash" and "start-update" in words(s)]
    if len(roll) != 1:
        errors.append(f"{example}: expected one bash step that runs start-update, found {len(roll)}")
        return
    m = re.search(r"--version[= ]template=(\S+)", render(words(roll[0]), subs))
    template = m.group(1) if m else "?"
    blue, green = "shop-blue", "shop-green"
    groups = {"blue": ZONAL.format(blue), "green": REGIONAL.format(green)}
    scenarios = {
        # name: (weights csv, candidate substitution, green's groups, rolled groups or None for a failure)
        "blue serving, green idle": (f"{blue},1000\\n{green},0\\n", "", groups["green"], [f"{green}-rig --region=europe-west1"]),
        "idle weight printed empty, candidate named": (f"{blue},1000\\n{green},\\n", green, groups["green"], [f"{green}-rig --region=europe-west1"]),
        "green serving, blue idle": (f"{blue},0\\n{green},1000\\n", "", groups["green"], [f"{blue}-ig --zone=europe-west1-b"]),
        "rollout in progress": (f"{blue},500\\n{green},500\\n", "", groups["green"], None),
        "candidate names the serving backend": (f"{blue},1000\\n{green},0\\n", blue, groups["green"], None),
        "idle backend has NEGs": (f"{blue},1000\\n{green},0\\n", "", NEG.format(green), None),
    }
    with tempfile.TemporaryDirectory() as tmp:
        fake = os.path.join(tmp, "bin", "gcloud")
        os.makedirs(os.path.dirname(fake))
        with open(fake, "w") as f:
            f.write(FAKE_GCLOUD_LB)
        os.chmod(fake, 0o755)
        for n, (name, (weights, candidate, green_groups, rolled)) in enumerate(scenarios.items()):
            work = os.path.join(tmp, str(n))
            os.makedirs(work)
            log = os.path.join(tmp, f"{n}.log")
            env = {"WEIGHTS": weights, "GCLOUD_LOG": log, "GROUPS_shop_blue": groups["blue"],
                   "GROUPS_shop_green": green_groups}
            r = run_bash_step(roll[0], {**subs, "_CANDIDATE_BACKEND": candidate}, env, work,
                              path_prepend=os.path.dirname(fake))
            calls = open(log).read().splitlines() if os.path.exists(log) else []
            started = [c for c in calls if "rolling-action start-update" in c]
            waited = [c for c in calls if " wait-until " in f" {c}" and "--stable" in c]
            if rolled is None:
                good = r.returncode != 0 and not started
            else:
                good = (r.returncode == 0 and len(started) == len(rolled) and len(waited) == len(rolled)
                        and all(f"start-update {g}" in c and f"template={template}" in c for g, c in zip(rolled, started))
                        and all(f"wait-until {g}" in c for g, c in zip(rolled, waited)))
            if not good:
                errors.append(f"{example}: roll step, {name}: exit {r.returncode}, updates {started or 'none'}, "
                              f"waits {waited or 'none'} (stderr: {r.stderr.strip()[:200]!r})")


def main(own, *examples):
    errors = []
    check_own(own, errors)
    for example in examples:
        doc = check(example, errors)
        if not doc:
            continue
        declared = doc.get("substitutions") or {}
        if "_SERVICE_NAME" in declared:
            check_cloud_run_example(example, doc, errors)
        elif "_APPENGINE_SERVICE" in declared:
            check_appengine_example(example, doc, errors)
        elif "_URL_MAP" in declared:
            check_url_map_example(example, doc, errors)
        else:
            errors.append(f"{example}: declares none of _SERVICE_NAME, _APPENGINE_SERVICE, _URL_MAP: "
                          "cutover would start no rollout from it")
    for e in errors:
        print(f"{CHECK}: {e}")
    print(f"{CHECK}: {own} and {', '.join(examples)} read, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    sys.exit(main(*sys.argv[1:]))
