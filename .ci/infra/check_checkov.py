#!/usr/bin/env python3
"""Check checkov: `checkov -d infra` with zero failed checks, every skip justified inline.

Runs checkov (offline: --skip-download) on the Terraform framework and reads its
JSON report. Fails on any failed check or parsing error, and on any skipped check
whose inline `#checkov:skip=CKV_...:reason` gives no real reason. Skips are only
taken from inline comments: no check is skipped on the command line.
Usage: check_checkov.py CHECKOV_BINARY [infra]
"""

import json
import subprocess
import sys

CHECK = "checkov"


def main(checkov, root="infra"):
    cmd = [checkov, "-d", root, "--framework", "terraform", "--skip-download", "-o", "json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    try:
        report = json.loads(r.stdout)
    except ValueError:
        print(f"{CHECK}: checkov produced no JSON report (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
        return 1
    reports = report if isinstance(report, list) else [report]
    if not any(rep.get("check_type") == "terraform" for rep in reports):
        print(f"{CHECK}: no terraform results: is {root}/ empty?")
        return 1
    problems = 0
    totals = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0}
    for rep in reports:
        for k in totals:
            totals[k] += rep.get("summary", {}).get(k, 0)
        results = rep.get("results", {})
        for c in results.get("failed_checks", []):
            problems += 1
            lines = "-".join(str(n) for n in c.get("file_line_range", []))
            print(f"{CHECK}: FAILED {c['check_id']} {c['resource']} ({c.get('file_path', '')}:{lines}): {c['check_name']}")
        for c in results.get("skipped_checks", []):
            reason = (c.get("check_result") or {}).get("suppress_comment") or ""
            if len(reason.strip()) < 20 or reason.strip().lower() == "no comment provided":
                problems += 1
                print(f"{CHECK}: {c['check_id']} on {c['resource']} is skipped without a reason: write #checkov:skip={c['check_id']}:<why>")
        for p in results.get("parsing_errors", []):
            problems += 1
            print(f"{CHECK}: parsing error in {p}")
    print(
        f"{CHECK}: {totals['passed']} passed, {totals['failed']} failed, "
        f"{totals['skipped']} skipped inline, {totals['parsing_errors']} parsing errors"
    )
    return 1 if problems or r.returncode not in (0, 1) else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
