"""The profiles of one or more loaded data sets side by side, as Markdown a reviewer reads (``profile`` command).

One table per section of ``profile_shape.SECTIONS``, one row per claim, one column per data set. A claim is shown
when it holds, or nearly holds (at most ``NEARLY`` of its rows break it), in at least one data set: those are the
candidate rules, and a claim that holds in one data set and not another is exactly what a review must look at.
Measurements (ranges, spans) are always shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from include.greenery_data.profile_shape import SECTIONS, Finding

NEARLY = 0.2
HOLDS_EVERYWHERE = "holds in all"

SECTION_TITLES = {
    "columns": "Columns: nulls, distinct values, ranges and dates",
    "keys": "Candidate keys: unique columns, pairs, and columns unique within a category",
    "dependencies": "Dependencies within a row: what a category decides, what determines or restates what, sums",
    "time order": "Time order: within a row, across relations, and between categories that share a key",
}


def shown(finding: Finding) -> bool:
    if finding.violations is None:
        return True
    if finding.violations == 0:
        return True
    return finding.near_miss_telling and bool(finding.checked) and finding.violations <= NEARLY * finding.checked


def cell(finding: Finding | None) -> str:
    if finding is None:
        return "–"
    if finding.violations is None:
        return finding.measured
    checked = f"{finding.checked:,}" if finding.checked is not None else "?"
    text = f"✓ {checked}" if finding.violations == 0 else f"✗ {finding.violations:,} {finding.unit} of {checked}"
    return f"{text}; {finding.measured}" if finding.measured else text


def report(profiles: Mapping[str, Sequence[Finding]], title: str = "Profile of the raw tables") -> str:
    """Markdown for the profiles of the data sets in ``profiles`` (label -> findings), in the order given."""
    labels = list(profiles)
    merged: dict[tuple[str, str, str], dict[str, Finding]] = {}
    for label, findings in profiles.items():
        for finding in findings:
            merged.setdefault((finding.section, finding.subject, finding.claim), {})[label] = finding
    lines = [
        f"# {title}",
        "",
        f"Data sets: {', '.join(labels)}. ✓ N: the claim holds on all N rows (or values) checked; ✗: how many",
        f"break it. A claim is listed when it holds, or breaks on at most {NEARLY:.0%} of its rows, in at least one",
        "data set.",
    ]
    for section in SECTIONS:
        rows = [
            (subject, claim, by_label)
            for (row_section, subject, claim), by_label in merged.items()
            if row_section == section and any(shown(finding) for finding in by_label.values())
        ]
        if not rows:
            continue
        lines += ["", f"## {SECTION_TITLES[section]}", ""]
        header = ["subject", "claim", *labels] + ([] if section == "columns" else [HOLDS_EVERYWHERE])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for subject, claim, by_label in rows:
            cells = [_escape(subject), _escape(claim), *(_escape(cell(by_label.get(label))) for label in labels)]
            if section != "columns":
                claims = [by_label.get(label) for label in labels]
                holds = all(finding is not None and finding.violations == 0 for finding in claims)
                cells.append("yes" if holds else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")
