"""Snoozes: a clinician's informed override that stops a card repeating for a while.

An override reason that carries a snooze (``cards/common.toml`` [override_reasons.snooze_days]),
picked on a card the service served, is recorded by the feedback store as a ``Snooze`` for that
patient (hashed in the store), rule and drug. This module decides what a snooze does to the
findings of a hook call; it is pure (the store is read by the caller):

* patient-view does not repeat a finding of the same rule and drug while the snooze holds;
* order hooks still show it (a new order is a new decision) and say an earlier override holds;
* a finding whose facts got worse is never hidden: another rule (calciphylaxis after a
  dialysis-level override) or a more severe indicator than the one overridden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from cds_service.checks.findings import Finding, Snooze

__all__ = ["SEVERITY", "Snooze", "apply_snoozes", "subject_of"]

SEVERITY = {"info": 0, "warning": 1, "critical": 2}


def subject_of(finding: Finding) -> str:
    """What a card is about, for snoozing: the first ingredient recognised, else the drug name;
    ``""`` for a chart-level finding."""
    order = finding.order
    if order is None:
        return ""
    return (order.ingredients[0] if order.ingredients else order.drug_name).strip().lower()


def _covering(finding: Finding, snoozes: Sequence[Snooze], now: datetime) -> Snooze | None:
    subject = subject_of(finding)
    for snooze in snoozes:
        if (
            snooze.rule_id == finding.rule_id
            and snooze.subject == subject
            and snooze.until > now
            and SEVERITY.get(finding.indicator, 2) <= SEVERITY.get(snooze.indicator, 0)
        ):
            return snooze
    return None


def apply_snoozes(findings: list[Finding], snoozes: Sequence[Snooze], hook: str, now: datetime) -> list[Finding]:
    """The findings to show: on patient-view without those a snooze covers; on order hooks all of
    them, each covered one saying which earlier override holds and until when."""
    if not snoozes:
        return findings
    shown: list[Finding] = []
    for finding in findings:
        snooze = _covering(finding, snoozes, now)
        if snooze is None:
            shown.append(finding)
        elif hook != "patient-view":
            shown.append(replace(finding, earlier_override=snooze))
    return shown
