"""The Voter application's rules, run through an in-process partition."""

import collections

import pytest

from flowstate.errors import UserAbortError
from flowstate.procedures.voter.phonecalls import INVALID_CONTESTANT, PhoneCallGenerator
from flowstate.procedures.voter.voter import (AREA_CODES, ERR_INVALID_CONTESTANT,
                                              ERR_VOTER_OVER_VOTE_LIMIT, VOTE_SUCCESSFUL)
from flowstate.server.partition import Partition

BOSTON = 6175551234          # area code 617: Massachusetts
UNKNOWN_AREA = 1005551234    # area code 100 does not exist


@pytest.fixture
def voter():
    p = Partition()
    assert p.call("Initialize", 6, "A,B,C,D,E,F") == 6
    return p


def test_initialize_fills_replicated_tables_once(voter):
    assert len(voter.db.contestants) == 6
    assert voter.db.contestants.get(1).contestant_name == "A"
    assert len(voter.db.area_code_state) == len(AREA_CODES) == 305
    assert voter.db.area_code_state.get(617).state == "MA"
    assert voter.call("Initialize", 3, "X,Y,Z") == 6       # already initialized: unchanged
    assert voter.db.contestants.get(1).contestant_name == "A"


def test_initialize_refuses_more_contestants_than_names():
    p = Partition()
    with pytest.raises(UserAbortError, match="between 1 and 2"):
        p.call("Initialize", 5, "A,B")
    assert len(p.db.contestants) == 0 and len(p.db.area_code_state) == 0


def test_vote_is_recorded_with_the_callers_state(voter):
    assert voter.call("Vote", BOSTON, 3, 2) == VOTE_SUCCESSFUL
    assert list(voter.db.votes.scan()) == [(BOSTON, "MA", 3)]
    assert voter.db.v_votes_by_phone_number.get(BOSTON).num_votes == 1
    assert voter.db.v_votes_by_contestant_number_state.get((3, "MA")).num_votes == 1


def test_unknown_area_code_votes_from_state_xx(voter):
    assert voter.call("Vote", UNKNOWN_AREA, 1, 2) == VOTE_SUCCESSFUL
    assert voter.db.v_votes_by_contestant_number_state.get((1, "XX")).num_votes == 1


def test_vote_for_missing_contestant_is_refused_and_not_counted(voter):
    assert voter.call("Vote", BOSTON, INVALID_CONTESTANT, 2) == ERR_INVALID_CONTESTANT
    assert voter.call("Vote", BOSTON, 7, 2) == ERR_INVALID_CONTESTANT
    assert len(voter.db.votes) == 0 and len(voter.db.v_votes_by_phone_number) == 0


def test_per_phone_limit(voter):
    assert voter.call("Vote", BOSTON, 1, 2) == VOTE_SUCCESSFUL
    assert voter.call("Vote", BOSTON, 2, 2) == VOTE_SUCCESSFUL
    assert voter.call("Vote", BOSTON, 3, 2) == ERR_VOTER_OVER_VOTE_LIMIT
    assert voter.db.v_votes_by_phone_number.get(BOSTON).num_votes == 2
    assert voter.call("Vote", BOSTON, 3, 3) == VOTE_SUCCESSFUL    # a higher limit admits it
    assert len(voter.db.votes) == 3


def test_results_rank_contestants_by_votes(voter):
    for phone, contestant in [(6175550001, 2), (6175550002, 2), (2125550003, 2),
                              (6175550004, 5), (2125550005, 5), (6175550006, 1)]:
        assert voter.call("Vote", phone, contestant, 2) == VOTE_SUCCESSFUL
    results = voter.call("Results")
    assert results.columns == ("contestant_name", "contestant_number", "total_votes")
    assert list(results) == [("B", 2, 3), ("E", 5, 2), ("A", 1, 1)]


def test_results_ties_break_by_contestant_number(voter):
    voter.call("Vote", 6175550001, 4, 2)
    voter.call("Vote", 6175550002, 3, 2)
    assert [r[1] for r in voter.call("Results")] == [3, 4]


def test_generated_workload_matches_a_plain_python_model(voter):
    """Run the real workload and recompute every outcome and count by hand."""
    calls = PhoneCallGenerator(6, seed=7)
    states = dict(AREA_CODES)
    per_phone = collections.Counter()
    per_contestant_state = collections.Counter()
    for _ in range(20_000):
        phone, contestant = calls.next_call()
        if not 1 <= contestant <= 6:
            expected = ERR_INVALID_CONTESTANT
        elif per_phone[phone] >= 2:
            expected = ERR_VOTER_OVER_VOTE_LIMIT
        else:
            expected = VOTE_SUCCESSFUL
            per_phone[phone] += 1
            per_contestant_state[contestant, states.get(phone // 10_000_000, "XX")] += 1
        assert voter.call("Vote", phone, contestant, 2) == expected
    assert {r.phone_number: r.num_votes for r in voter.db.v_votes_by_phone_number.scan()} == per_phone
    assert {(r.contestant_number, r.state): r.num_votes
            for r in voter.db.v_votes_by_contestant_number_state.scan()} == per_contestant_state
    assert len(voter.db.votes) == sum(per_phone.values())
    assert any(n == 2 for n in per_phone.values())      # the limit was exercised
