#!/usr/bin/env python3
"""Check readme-figures: every measured figure README.md quotes is one docs/performance.md records.

docs/performance.md holds the figures of the last full benchmark run, with the
machine and the command that made them. The README must not quote a size or a
time that no run produced (it once quoted a binary size the release profile no
longer gave). Checked:
* everywhere in README.md: every byte count (`7,789,752 bytes`);
* in the README sections that report measurements (MEASURED_SECTIONS): every
  number with a unit of size or time (bytes, KiB, MiB, GiB, ns, µs, ms, s) or
  a rate (/s).
Each must appear in docs/performance.md with the same unit; thousands
separators are ignored (7,789,752 and 7789752 are the same figure).
Usage: check_figures.py README.md docs/performance.md
"""

import re
import sys

CHECK = "readme-figures"
MEASURED_SECTIONS = ("Performance", "Image size")
UNIT = r"(bytes|KiB|MiB|GiB|ns|µs|ms|s\b|/s)"
FIGURE_RE = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s?" + UNIT)
BYTES_RE = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)\s?bytes\b")


def norm(number, unit):
    return f"{number.replace(',', '')} {unit}"


def sections(text):
    """(heading, body) for each heading of the text."""
    parts = re.split(r"^(#{1,6} .*)$", text, flags=re.M)
    yield "", parts[0]
    for i in range(1, len(parts), 2):
        yield parts[i].lstrip("#").strip(), parts[i + 1]


def main(readme, perf):
    text = open(readme, encoding="utf-8").read()
    recorded = {norm(n, u) for n, u in FIGURE_RE.findall(open(perf, encoding="utf-8").read())}
    quoted = {(norm(n, "bytes"), "anywhere") for n in BYTES_RE.findall(text)}
    for heading, body in sections(text):
        if heading in MEASURED_SECTIONS:
            # Code (commands, file names) is not a figure.
            prose = re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", body, flags=re.S))
            quoted |= {(norm(n, u), heading) for n, u in FIGURE_RE.findall(prose)}
    missing = sorted(q for q in quoted if q[0] not in recorded)
    lines = [f"{readme} ({where}) quotes {figure}, which {perf} does not record" for figure, where in missing]
    lines.append(f"{len(quoted)} figures quoted by {readme}, {len(missing)} not in {perf}")
    print("\n".join(f"{CHECK}: {line}" for line in lines))
    return int(bool(missing))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]) if len(sys.argv) == 3 else __doc__.strip().splitlines()[-1])
