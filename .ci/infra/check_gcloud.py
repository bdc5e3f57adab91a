#!/usr/bin/env python3
"""Check gcloud-commands: every gcloud command the docs give gets through gcloud's own parser.

A reader copies these commands as they are; a wrong flag or an unescaped list
value fails for them with "unrecognized arguments" or "Bad syntax". This check
runs each command through the installed gcloud, offline and without credentials,
and requires it to get past everything gcloud checks locally (arguments, flag
values, resource names, config files it reads) to the point where it would need
an account: "You do not currently have an active account selected", or, for the
commands that set one up or install components, the step that needs a person or
the network. Anything else fails the check, with gcloud's message.

Where the commands come from:
* Markdown (README.md, infra/README.md): fenced code blocks (sh, bash, shell,
  console or no language), with `\\` line continuations joined, `$ ` prompts and
  comments dropped, and each `gcloud` command of a `;`, `&&`, `||` or `|` chain,
  up to any redirection; and inline code spans that start with `gcloud `. A span
  with no flag may name a command rather than give one (`gcloud run services
  update`): if it does not get through as a command, it must get through with
  `--help` added (the command exists).
  A file a block writes (`> service.yaml`) exists for the commands after it, as
  a minimal Cloud Run service (STUB).
* Cloud Build files: steps whose entrypoint is gcloud (entrypoint + args), and
  `gcloud` lines of bash script steps; substitutions take their declared
  defaults (expanded like Cloud Build's options.dynamicSubstitutions when that
  is on), $PROJECT_ID, $BUILD_ID and $SHORT_SHA example values, `$$` is a
  literal `$`, and a script's shell variables take the example values of
  SHELL_VARIABLES (a new one goes there). The files a pipeline's commands
  read from its own repository (app.yaml, startup.sh) exist, as PIPELINE_FILES.
* infra/outputs.tf: the `build_command` output, its `${...}` parts replaced with
  example values (INTERPOLATIONS below).
Placeholders written in capitals (PROJECT, REGION, ...) are replaced with
example values first (PLACEHOLDERS below); a new placeholder goes there.

How gcloud runs here: each command with a new, empty configuration directory
(so no account of the person running this is used: every CLOUDSDK_* and GOOGLE_*
variable of the environment is dropped), prompts off, a fixed example project,
the GCE metadata check off and its address on a closed loopback port, gcloud's
proxy set to a closed loopback port (any request that would leave the machine
fails at once), stdin empty, from the repository root, TIMEOUT seconds at most.
Traced with `strace -e trace=connect`, gcloud then opens no network connection
at all (with a default environment it would still look up
metadata.google.internal in DNS to learn whether it runs on GCE). Commands run
WORKERS at a time.
Usage: check_gcloud.py FILE...   (.md, .yaml, or infra/outputs.tf)
"""

import concurrent.futures
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

CHECK = "gcloud-commands"
TIMEOUT = 60
WORKERS = 4

# Capitalised placeholders of the docs and the example values they take.
PLACEHOLDERS = {
    "PROJECT_NUMBER": "123456789012",
    "PROJECT": "example-project",
    "REGION": "europe-west1",
    "SERVICE": "example-service",
    "IMAGE": "europe-west1-docker.pkg.dev/example-project/cutover/cutover:1",
    "BUILD_ID": "0d97c63e-a349-4bf7-80d0-8f6e21786d87",
}
# `${...}` expressions of infra/outputs.tf's build_command, with example values.
INTERPOLATIONS = {
    "var.project_id": "example-project",
    "var.region": "europe-west1",
    "google_service_account.build.id": "projects/example-project/serviceAccounts/cutover-build@example-project.iam.gserviceaccount.com",
    "google_storage_bucket.build_source.name": "example-project-cutover-source",
    "google_artifact_registry_repository.cutover.repository_id": "cutover",
    "google_cloud_run_v2_service.cutover.name": "cutover",
}
CLOUD_BUILD_BUILTINS = {"PROJECT_ID": "example-project", "BUILD_ID": "0d97c63e-a349-4bf7-80d0-8f6e21786d87",
                        "SHORT_SHA": "a017b5e"}
# Shell variables of Cloud Build script steps (examples/mig-cloudbuild.yaml),
# as whole arguments, and the example values they take.
SHELL_VARIABLES = {
    "$idle": ["shop-green"],
    "$name": ["shop-green-rig"],
    "${where[@]}": ["--region=europe-west1"],
}
# Files of the service's repository that the example pipelines' commands read.
PIPELINE_FILES = {
    "app.yaml": "runtime: python312\n",
    "startup.sh": "#!/bin/bash\n",
}

# What a command that gcloud accepted runs into here, offline and with no account.
REACHED = [
    "You do not currently have an active account selected",
    # `gcloud auth login` / `application-default login`: waits for a person.
    "Go to the following link in your browser",
    # `gcloud components install` on a packaged install (apt, as here and in CI).
    "component manager is disabled for this installation",
    # a request that would leave the machine (none should: there is no account).
    "Failed to establish a new connection",
    "Connection refused",
    # `gcloud components install` on an install made with Google's installer.
    "Failed to fetch component listing",
]
# What a file written by an earlier command of the docs (`> file`) holds here.
STUB = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: example-service\n"
SHELL_LANGS = {"", "sh", "bash", "shell", "console"}
OPERATORS = {";", "&&", "||", "|", "&"}


def substitute(cmd):
    for name, value in PLACEHOLDERS.items():
        cmd = re.sub(rf"\b{name}\b", value, cmd)
    return cmd


def split_shell(line, written=None):
    """The gcloud commands of one (joined) shell line, as argument lists; the
    files it redirects output to are added to `written`."""
    if not re.search(r"\bgcloud\b", line):
        # Untagged blocks are read as shell too; a line that names no gcloud (a file
        # listing, prose with an apostrophe) has nothing to check.
        return []
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        tokens = list(lex)
    except ValueError as e:
        return [("error", f"cannot split {line!r}: {e}")]
    commands, current, redirected = [], [], False
    for tok in tokens:
        if tok in OPERATORS or set(tok) <= set(";&|"):
            commands.append(current)
            current, redirected = [], False
        elif set(tok) <= set("<>"):
            # `2>file`: the descriptor number belongs to the redirection.
            if current and current[-1].isdigit():
                current.pop()
            redirected = True
        elif redirected:
            redirected = False  # the redirection's target; later words are still arguments
            if written is not None and not tok.startswith("/dev/"):
                written.add(tok)
        else:
            current.append(tok)
    commands.append(current)
    out = []
    for c in commands:
        while c and c[0] in ("if", "elif", "then", "else", "do", "!", "time"):
            c = c[1:]
        if c and c[0] == "gcloud":
            out.append(("ok", c))
    return out


def markdown_commands(path):
    text = open(path, encoding="utf-8").read()
    found = []
    written = set()
    lines = text.split("\n")
    prose = []
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(```|~~~)\s*([\w-]*)", lines[i])
        if not m:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2), i + 1
        i += 1
        block = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            block.append((i + 1, lines[i]))
            i += 1
        i += 1
        if lang not in SHELL_LANGS:
            continue
        joined, first = "", None
        for n, line in block:
            stripped = re.sub(r"^\s*\$ ", "", line)
            first = first or n
            if stripped.rstrip().endswith("\\"):
                joined += stripped.rstrip()[:-1] + " "
                continue
            joined += stripped
            for kind, cmd in split_shell(joined, written):
                found.append((f"{path}:{first}", kind, cmd, frozenset(written)))
            joined, first = "", None
        if joined.strip():
            found.append((f"{path}:{start}", "error", "a line continuation runs past the end of the block", frozenset()))
    # Inline code spans in prose (a span may wrap onto the next line).
    text_prose = "\n".join(line for _, line in prose)
    line_of = {}
    offset = 0
    for n, line in prose:
        line_of[offset] = n
        offset += len(line) + 1
    starts = sorted(line_of)
    for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text_prose):
        span = " ".join(m.group(1).split())
        if not span.startswith("gcloud "):
            continue
        n = line_of[max(s for s in starts if s <= m.start())]
        for kind, cmd in split_shell(span):
            if kind == "ok" and not any(a.startswith("-") for a in cmd):
                kind = "mention"
            found.append((f"{path}:{n}", kind, cmd, frozenset()))
    return found


def cloudbuild_commands(path):
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    subs = {**CLOUD_BUILD_BUILTINS, **{k: str(v) for k, v in (doc.get("substitutions") or {}).items()}}

    def one(s, values):
        return re.sub(r"\$\$|\$(?:\{(\w+)\}|(\w+))",
                      lambda m: "$" if m.group(0) == "$$" else values.get(m.group(1) or m.group(2), m.group(0)), s)

    if (doc.get("options") or {}).get("dynamicSubstitutions"):
        for _ in range(3):
            subs = {k: one(v, subs) for k, v in subs.items()}

    def render(s):
        return one(s, subs)

    def shell_values(cmd):
        out = []
        for a in cmd:
            out += SHELL_VARIABLES.get(a, [a])
        return out

    files = frozenset(PIPELINE_FILES)
    found = []
    for i, step in enumerate(doc.get("steps") or []):
        where = f"{path}: step {step.get('id', i)}"
        args = [render(str(a)) for a in step.get("args") or []]
        if step.get("entrypoint") == "gcloud":
            found.append((where, "ok", ["gcloud"] + args, files))
        elif step.get("entrypoint") in ("bash", "sh") and "-c" in args:
            script = args[args.index("-c") + 1]
            for line in re.sub(r"\\\n", " ", script).split("\n"):
                for kind, cmd in split_shell(line):
                    found.append((where, kind, shell_values(cmd) if kind == "ok" else cmd, files))
    return found


def output_commands(path):
    text = open(path, encoding="utf-8").read()
    m = re.search(r'output "build_command" \{.*?join\(" ", \[(.*?)\]\)', text, re.S)
    if not m:
        return [(f"{path}", "error", "no output build_command = join(\" \", [...])", frozenset())]
    words = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
    unknown = set()

    def value(e):
        e = e.group(1).strip()
        if e not in INTERPOLATIONS:
            unknown.add(e)
        return INTERPOLATIONS.get(e, "x")

    line = " ".join(re.sub(r"\$\{([^}]*)\}", value, w) for w in words)
    if unknown:
        return [(f"{path}: build_command", "error", f"no example value for {sorted(unknown)} (add to INTERPOLATIONS)", frozenset())]
    return [(f"{path}: build_command", kind, cmd, frozenset()) for kind, cmd in split_shell(line)]


def clean_env(config_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSDK_", "GOOGLE_", "GCE_"))}
    env.update({
        "CLOUDSDK_CONFIG": config_dir,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_PROJECT": "example-project",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        "CLOUDSDK_SURVEY_DISABLE_PROMPTS": "true",
        "CLOUDSDK_PROXY_TYPE": "http",
        "CLOUDSDK_PROXY_ADDRESS": "127.0.0.1",
        "CLOUDSDK_PROXY_PORT": "9",
        "GCE_METADATA_ROOT": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
        "NO_PROXY": "",
        "no_proxy": "",
    })
    return env


def workdir(root, written):
    """A directory that looks like the repository root (its entries linked),
    plus a STUB for each file the docs wrote before this command."""
    for name in os.listdir("."):
        os.symlink(os.path.abspath(name), os.path.join(root, name))
    for name in written:
        target = os.path.join(root, name)
        if os.path.dirname(os.path.abspath(target)) == root and not os.path.lexists(target):
            with open(target, "w") as f:
                f.write(PIPELINE_FILES.get(name, STUB))
    return root


def run(cmd, gcloud, written):
    """(passed, first error lines) for one command."""
    with tempfile.TemporaryDirectory() as config, tempfile.TemporaryDirectory() as cwd:
        # gcloud's cached answer to "is this a GCE VM?": no, so it never asks.
        with open(os.path.join(config, "gce"), "w") as f:
            f.write("False")
        try:
            r = subprocess.run([gcloud] + cmd[1:], env=clean_env(config), stdin=subprocess.DEVNULL,
                               cwd=workdir(cwd, written), capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return False, f"did not finish within {TIMEOUT}s"
    if r.returncode == 0:
        return True, "exit 0"
    err = " ".join(r.stderr.split())
    for sign in REACHED:
        if sign in err:
            return True, sign
    return False, f"exit {r.returncode}: {err[:400]}"


def check(cmd, gcloud, written, mention):
    ok, why = run(cmd, gcloud, written)
    if ok or not mention:
        return ok, why
    ok, _ = run(cmd + ["--help"], gcloud, written)
    return ok, "a command name: exists" if ok else why


def main(*paths):
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        print(f"{CHECK}: gcloud not found: install the Google Cloud CLI (apt package google-cloud-cli)")
        return 1
    found = []
    for path in paths:
        if path.endswith(".md"):
            found += markdown_commands(path)
        elif path.endswith((".yaml", ".yml")):
            found += cloudbuild_commands(path)
        elif path.endswith(".tf"):
            found += output_commands(path)
        else:
            print(f"{CHECK}: do not know how to read {path}")
            return 1
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        results = [
            pool.submit(check, [substitute(a) for a in cmd], gcloud, written, kind == "mention")
            if kind != "error" else None
            for _, kind, cmd, written in found
        ]
        failed = 0
        for (where, kind, cmd, _), result in zip(found, results):
            if result is None:
                print(f"{CHECK}: FAIL {where}: {cmd}")
                failed += 1
                continue
            ok, why = result.result()
            shown = " ".join(shlex.quote(a) for a in cmd)
            print(f"{CHECK}: {'ok  ' if ok else 'FAIL'} {where}: {shown}" + ("" if ok else f"\n    {why}"))
            failed += not ok
    print(f"{CHECK}: {len(found)} commands from {len(paths)} files, {failed} failed")
    return 1 if failed or not found else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    sys.exit(main(*sys.argv[1:]))
