"""The Voter workload: who calls, and for whom (VoltDB's PhoneCallGenerator).

Phone numbers are a real area code followed by a random 7-digit number.
Half of the calls pick a contestant at random; the other half pick the
favourite of the caller's area code, which skews the results the way a
real audience would. One call in a hundred is for contestant 999, who
does not exist (the Vote procedure refuses it). A small share of calls
comes from a fixed pool of repeat callers, so the per-phone vote limit is
exercised even in short runs (with random 7-digit suffixes a phone almost
never calls three times otherwise).
"""

from __future__ import annotations

import random

from flowstate.procedures.voter.voter import AREA_CODES

INVALID_CONTESTANT = 999


class PhoneCallGenerator:
    """An endless, reproducible stream of (phone_number, contestant_number)."""

    def __init__(self, num_contestants: int, seed: int | None = None,
                 repeat_callers: int = 100, repeat_share: float = 0.02):
        self.num_contestants = num_contestants
        self.rng = random.Random(seed)
        self.area_codes = [code for code, _ in AREA_CODES]
        # each area code has a favourite contestant
        self.favourite = [self.rng.randint(1, num_contestants) for _ in self.area_codes]
        self.repeat_pool = [self._phone(self.rng.randrange(len(self.area_codes)))
                            for _ in range(repeat_callers)]
        self.repeat_share = repeat_share

    def _phone(self, area_index: int) -> int:
        return self.area_codes[area_index] * 10_000_000 + self.rng.randrange(10_000_000)

    def next_call(self) -> tuple[int, int]:
        rng = self.rng
        area_index = rng.randrange(len(self.area_codes))
        if rng.random() < self.repeat_share:
            phone = rng.choice(self.repeat_pool)
        else:
            phone = self._phone(area_index)
        if rng.random() < 0.01:
            contestant = INVALID_CONTESTANT
        elif rng.random() < 0.5:
            contestant = self.favourite[area_index]
        else:
            contestant = rng.randint(1, self.num_contestants)
        return phone, contestant
