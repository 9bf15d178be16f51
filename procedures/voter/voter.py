"""The Voter application's procedures: VoltDB's Voter sample on Flowstate.

Callers vote for contestants of a talent show by phone. The rules:
  * a vote for a contestant who does not exist is refused (1);
  * a phone number may vote at most ``max_votes_per_phone`` times (2);
  * otherwise the vote is recorded with the caller's state, found from the
    phone number's area code (``XX`` when the area code is unknown) (0).
"""

from __future__ import annotations

import csv
from pathlib import Path

from flowstate.procedures import PartitionOn, Procedure, ResultTable

VOTE_SUCCESSFUL = 0
ERR_INVALID_CONTESTANT = 1
ERR_VOTER_OVER_VOTE_LIMIT = 2

UNKNOWN_STATE = "XX"


def _read_area_codes() -> tuple[tuple[int, str], ...]:
    with open(Path(__file__).with_name("area_codes.csv"), newline="") as f:
        return tuple((int(r["area_code"]), r["state"]) for r in csv.DictReader(f))


#: Real US area codes and their states (the application's reference data).
AREA_CODES = _read_area_codes()

DEFAULT_CONTESTANTS = ("Edwina Burnam,Tabatha Gehling,Kelly Clauss,Jessie Alloway,"
                       "Alana Bregman,Jessie Eichman,Allie Rogalski,Nita Coster,"
                       "Kurt Walser,Ericka Dieter,Loraine Nygren,Tania Mattioli")


class Initialize(Procedure):
    """Fill the replicated tables: contestants and area codes. Writes to
    replicated tables make it multi-partition. Returns the number of
    contestants; a second call changes nothing and returns the same."""

    def run(self, num_contestants, contestant_names=DEFAULT_CONTESTANTS):
        db = self.db
        if len(db.contestants):
            return len(db.contestants)
        names = (contestant_names.split(",") if isinstance(contestant_names, str)
                 else list(contestant_names))
        names = [n.strip() for n in names if n.strip()]
        if not 1 <= num_contestants <= len(names):
            from flowstate.procedures import Abort
            raise Abort(f"num_contestants must be between 1 and {len(names)} "
                        f"(the number of names given), got {num_contestants}")
        for number, name in enumerate(names[:num_contestants], start=1):
            db.contestants.insert(number, name)
        for area_code, state in AREA_CODES:
            db.area_code_state.insert(area_code, state)
        return num_contestants


class Vote(Procedure):
    """Record one vote, if the contestant exists and the phone is under its limit."""

    partition = PartitionOn("votes", "phone_number", parameter=0)

    def run(self, phone_number, contestant_number, max_votes_per_phone):
        db = self.db
        if db.contestants.get(contestant_number) is None:
            return ERR_INVALID_CONTESTANT

        votes_so_far = db.v_votes_by_phone_number.get(phone_number)
        if votes_so_far is not None and votes_so_far.num_votes >= max_votes_per_phone:
            return ERR_VOTER_OVER_VOTE_LIMIT

        area_code = phone_number // 10_000_000
        area = db.area_code_state.get(area_code) if 0 <= area_code <= 32767 else None
        state = area.state if area is not None else UNKNOWN_STATE

        db.votes.insert(phone_number, state, contestant_number)
        return VOTE_SUCCESSFUL


class Results(Procedure):
    """Total votes per contestant who has votes, most votes first (ties by
    contestant number). Multi-partition: sums every partition's view."""

    COLUMNS = (("contestant_name", "VARCHAR"), ("contestant_number", "INTEGER"),
               ("total_votes", "BIGINT"))

    def run(self):
        db = self.db
        totals: dict[int, int] = {}
        for row in db.v_votes_by_contestant_number_state.scan():
            totals[row.contestant_number] = totals.get(row.contestant_number, 0) + row.num_votes
        rows = []
        for number, total in totals.items():
            contestant = db.contestants.get(number)
            if contestant is not None:
                rows.append((contestant.contestant_name, number, total))
        rows.sort(key=lambda r: (-r[2], r[1], r[0]))
        return ResultTable(self.COLUMNS, rows)
