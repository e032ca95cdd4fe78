"""Type aliases and small vocabularies used across modules."""

from __future__ import annotations

from typing import Literal

# Decisions of time to intervention, most urgent first: the ranking everywhere answers are listed.
# `stale`: the series' data stopped arriving (a monitoring problem, not a forecast); it ranks
# after the actions due and before what is only watched.
Decision = Literal["breached", "act_now", "schedule", "stale", "watch", "ok"]
DECISIONS: tuple[Decision, ...] = ("breached", "act_now", "schedule", "stale", "watch", "ok")
