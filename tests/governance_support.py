"""A realistic mix of served cards and feedback over several weeks, for the governance report tests.

Deterministic (a seeded generator): each rule fires at its own indicators with its own habits
(C1 in calciphylaxis is mostly accepted, the dialysis-level C2 info card mostly ignored or
overridden, ...), feedback arrives up to a few days after the card, some cards get two feedback
items (the later one counts), and a few feedback items name cards that were never served.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from cds_service.governance import (
    ActiveSnooze,
    FeedbackRecord,
    GovernanceData,
    IsoWeek,
    ServedCardRecord,
    build_governance_data,
)

START = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)  # Monday of 2026-W41
WEEKS = 8
GENERATED_AT = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)

REASONS = {
    "benefit": "Benefit outweighs the risk for this patient",
    "substitute": "Suggested substitute not tolerated or contraindicated",
    "nephrology": "Already being addressed with nephrology",
}

# rule id, indicator, cards per week, P(accepted), P(overridden), override reasons (weights), suggestions
PROFILES: list[tuple[str, str, int, float, float, dict[str, int], list[str]]] = [
    (
        "C1-calcium-binder-calciphylaxis",
        "critical",
        6,
        0.62,
        0.25,
        {"substitute": 2, "nephrology": 1},
        [
            "Replace with sevelamer carbonate 800 mg three times daily with meals",
            "Replace with lanthanum carbonate 500 mg three times daily with meals",
        ],
    ),
    (
        "C1-calcium-binder-dialysis",
        "warning",
        9,
        0.3,
        0.45,
        {"benefit": 3, "nephrology": 2, "substitute": 1},
        ["Replace with sevelamer carbonate 800 mg three times daily with meals"],
    ),
    (
        "C2-vka-calciphylaxis",
        "critical",
        2,
        0.5,
        0.4,
        {"benefit": 1},
        ["Replace with apixaban 2.5 mg twice daily"],
    ),
    (
        "C2-vka-dialysis",
        "info",
        7,
        0.05,
        0.55,
        {"benefit": 4, "nephrology": 1},
        ["Replace with apixaban 2.5 mg twice daily"],
    ),
    ("C4-iron-calciphylaxis", "warning", 3, 0.0, 0.7, {"benefit": 3, "nephrology": 2}, []),
    ("M1-mineral-status-calciphylaxis", "info", 5, 0.2, 0.1, {"nephrology": 1}, ["Order sodium thiosulfate 25 g IV"]),
]

RULE_TITLES = {
    "C1-calcium-binder-calciphylaxis": "Calcium-based binder in calciphylaxis",
    "C1-calcium-binder-dialysis": "Calcium-based binder on dialysis, calcium high or PTH low",
    "C2-vka-calciphylaxis": "Vitamin K antagonist in calciphylaxis",
    "C2-vka-dialysis": "Vitamin K antagonist on dialysis",
    "C4-iron-calciphylaxis": "Iron in calciphylaxis: the sources disagree",
    "M1-mineral-status-calciphylaxis": "Mineral status review in calciphylaxis",
}

# Identifiers that must never reach the page.
PATIENT_IDS = [f"Patient/pt-{n:04d}" for n in range(40)]


def realistic_records(seed: int = 13) -> tuple[list[ServedCardRecord], list[FeedbackRecord]]:
    rng = random.Random(seed)
    served: list[ServedCardRecord] = []
    feedback: list[FeedbackRecord] = []
    n = 0
    for week in range(WEEKS):
        for rule_id, indicator, per_week, p_accept, p_override, reasons, suggestions in PROFILES:
            # Fewer cards as the service beds in, and a quiet week 5 (a holiday).
            count = max(0, round(per_week * (1.15 - 0.04 * week) * (0.4 if week == 5 else 1.0)))
            for _ in range(count):
                n += 1
                at = START + timedelta(days=7 * week, hours=rng.randrange(0, 6 * 24))
                labels = {f"sugg-{n}-{i}": label for i, label in enumerate(suggestions)}
                card = ServedCardRecord(f"card-{n:05d}", rule_id, indicator, at, labels)
                served.append(card)
                roll = rng.random()
                when = at + timedelta(minutes=rng.randrange(1, 60 * 24 * 3))
                if roll < p_accept and labels:
                    feedback.append(
                        FeedbackRecord(
                            card.card_uuid, "accepted", when, accepted_suggestions=(rng.choice(list(labels)),)
                        )
                    )
                elif roll < p_accept + p_override:
                    code = rng.choices(list(reasons), weights=list(reasons.values()))[0] if reasons else None
                    reason = REASONS[code] if code and rng.random() > 0.1 else None
                    if rng.random() < 0.15:  # a first, mistaken "accepted", corrected later
                        feedback.append(
                            FeedbackRecord(
                                card.card_uuid, "accepted", when - timedelta(minutes=5), accepted_suggestions=()
                            )
                        )
                    feedback.append(
                        FeedbackRecord(
                            card.card_uuid, "overridden", when, override_reason=reason, has_comment=rng.random() < 0.3
                        )
                    )
    # Feedback on cards this service never served (another instance, or before the log began).
    feedback.append(FeedbackRecord("card-elsewhere-1", "overridden", START, override_reason=REASONS["benefit"]))
    feedback.append(FeedbackRecord("card-elsewhere-2", "accepted", START, accepted_suggestions=("x",)))
    return served, feedback


def realistic_data() -> GovernanceData:
    served, feedback = realistic_records()
    return build_governance_data(
        served,
        feedback,
        snoozes=[
            ActiveSnooze(
                "C1-calcium-binder-dialysis",
                "calcium acetate",
                4,
                datetime(2026, 12, 14, tzinfo=UTC),
                datetime(2027, 2, 20, tzinfo=UTC),
            ),
            ActiveSnooze(
                "C2-vka-dialysis", "warfarin", 2, datetime(2026, 12, 28, tzinfo=UTC), datetime(2027, 1, 9, tzinfo=UTC)
            ),
        ],
        rule_titles=RULE_TITLES,
        last_week=IsoWeek.of(GENERATED_AT),
    )
