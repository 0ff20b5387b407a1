"""Outcomes of the conformance cases per backend: the terminal summary and a Markdown report.

Each case's report carries its target and case names (``user_properties``, filled where
the case runs), and :class:`Results` counts them where reports arrive: in the only
process, or in the pytest-xdist controller, so the summary survives ``-n N``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CASE_PROPERTY", "TARGET_PROPERTY", "Results", "TargetInfo", "case_name"]

TARGET_PROPERTY = "soma_conformance_target"
CASE_PROPERTY = "soma_conformance_case"


@dataclass
class TargetInfo:
    """What the report says about a backend besides its cases."""

    scheduler_type: str
    capabilities: frozenset[str] = frozenset()
    where: str = ""  # "this machine", "DRMS slurm (1 container, ...)"


@dataclass
class Results:
    """Outcome and skip reason of every (target, case) seen."""

    targets: dict[str, TargetInfo] = field(default_factory=dict)
    #: target -> case -> (outcome, detail): "passed", "failed", "error" or "skipped" (+ the reason).
    outcomes: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add_report(self, report: Any) -> None:
        """Take a pytest ``TestReport`` of a conformance case (others are ignored)."""
        props = dict(getattr(report, "user_properties", ()) or ())
        target, case = props.get(TARGET_PROPERTY), props.get(CASE_PROPERTY)
        if target is None or case is None:
            return
        cases = self.outcomes.setdefault(str(target), {})
        self.seconds[str(target)] = self.seconds.get(str(target), 0.0) + float(getattr(report, "duration", 0.0))
        if report.when == "call":
            detail = _skip_reason(report) if report.skipped else ""
            cases[str(case)] = (report.outcome, detail)
        elif report.failed:  # setup or teardown error
            cases[str(case)] = ("error", f"in {report.when}")
        elif report.skipped and report.when == "setup":
            cases[str(case)] = ("skipped", _skip_reason(report))

    def counts(self, target: str) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for outcome, _ in self.outcomes.get(target, {}).values():
            out[outcome] = out.get(outcome, 0) + 1
        return out

    def summary_lines(self) -> list[str]:
        """One line per backend (counts), then its declared capabilities and what skipped."""
        lines = []
        for target in sorted(self.outcomes):
            c = self.counts(target)
            lines.append(f"{target:<24} {c['passed']:>4} passed  {c['failed'] + c['error']:>4} failed  "
                         f"{c['skipped']:>4} skipped")
            info = self.targets.get(target)
            if info is not None:
                lines.append(f"{'':<24} capabilities: {', '.join(sorted(info.capabilities)) or '(none)'}")
            skipped = sorted({d for o, d in self.outcomes[target].values() if o == "skipped"})
            for reason in skipped:
                cases = sorted(k for k, (o, d) in self.outcomes[target].items() if o == "skipped" and d == reason)
                lines.append(f"{'':<24} skipped ({reason}): {', '.join(cases)}")
        return lines

    def markdown(self, title: str = "soma_schedulers conformance report") -> str:
        """The case x backend matrix, with each skip's reason and each backend's capabilities."""
        targets = sorted(self.outcomes)
        cases = sorted({c for t in targets for c in self.outcomes[t]})
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        out = [f"# {title}", "", f"Made {when}.", "", "| backend | type | where | passed | failed | skipped |"
               " capabilities |", "|---|---|---|---|---|---|---|"]
        for t in targets:
            c = self.counts(t)
            info = self.targets.get(t, TargetInfo(t))
            out.append(f"| {t} | {info.scheduler_type} | {_cell(info.where)} | {c['passed']} | "
                       f"{c['failed'] + c['error']} | {c['skipped']} | {', '.join(sorted(info.capabilities))} |")
        out += ["", "| case | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
        for case in cases:
            cells = []
            for t in targets:
                outcome, detail = self.outcomes[t].get(case, ("", ""))
                cells.append({"passed": "pass", "failed": "**FAIL**", "error": "**ERROR**",
                              "skipped": f"skip: {_cell(detail)}", "": "-"}.get(outcome, outcome))
            out.append(f"| `{case}` | " + " | ".join(cells) + " |")
        return "\n".join(out) + "\n"

    def write_markdown(self, path: str | Path) -> None:
        Path(path).write_text(self.markdown(), encoding="utf-8")


def _skip_reason(report: Any) -> str:
    longrepr = getattr(report, "longrepr", None)
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
    return reason.removeprefix("Skipped: ").strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def case_name(originalname: str, callspec_id: str, target_id: str) -> str:
    """The case's name without the target part of its pytest id (``test_self_signal[SIGTERM]``)."""
    rest = _strip_id(callspec_id, target_id)
    return f"{originalname}[{rest}]" if rest else originalname


def _strip_id(ident: str, part: str) -> str:
    if ident == part:
        return ""
    if ident.startswith(part + "-"):
        return ident[len(part) + 1:]
    if ident.endswith("-" + part):
        return ident[: -len(part) - 1]
    return ident.replace(f"-{part}-", "-", 1)
