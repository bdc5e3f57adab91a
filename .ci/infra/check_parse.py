#!/usr/bin/env python3
"""Check hcl-parse: every .tf file under infra/ parses (python-hcl2), and so does every .json file."""

import json
import pathlib
import sys

import tfload

CHECK = "hcl-parse"


def main(root="infra"):
    root = pathlib.Path(root)
    files = tfload.tf_files(root)
    if not files:
        tfload.fail(CHECK, f"no .tf files under {root}/")
        return 1
    bad = 0
    for path in files:
        try:
            tfload.load(path)
        except Exception as e:  # python-hcl2 raises lark errors of several types
            tfload.fail(CHECK, f"{path}: does not parse: {str(e).strip().splitlines()[0]}")
            bad += 1
    jsons = sorted(p for p in root.rglob("*.json") if ".terraform" not in p.parts)
    for path in jsons:
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            tfload.fail(CHECK, f"{path}: invalid JSON: {e}")
            bad += 1
    print(f"{CHECK}: {len(files)} .tf and {len(jsons)} .json files read, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
