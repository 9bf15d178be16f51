-- The Voter application: VoltDB's Voter sample on Flowstate.
--
-- Callers vote for a contestant of a TV talent show by phone. Each phone
-- number may vote a limited number of times; votes are counted per phone
-- and per (contestant, state) by two materialized views.

-- Replicated: every partition has a copy; written by Initialize only.
CREATE TABLE contestants
(
  contestant_number integer     NOT NULL
, contestant_name   varchar(50) NOT NULL
, CONSTRAINT PK_contestants PRIMARY KEY (contestant_number)
);

-- Replicated: maps a phone number's area code to its state.
CREATE TABLE area_code_state
(
  area_code smallint   NOT NULL
, state     varchar(2) NOT NULL
, CONSTRAINT PK_area_code_state PRIMARY KEY (area_code)
);

-- One row per accepted vote; partitioned on the caller.
CREATE TABLE votes
(
  phone_number      bigint     NOT NULL
, state             varchar(2) NOT NULL
, contestant_number integer    NOT NULL
);
PARTITION TABLE votes ON COLUMN phone_number;

-- Votes per phone number, to enforce the per-phone limit.
CREATE VIEW v_votes_by_phone_number
(
  phone_number
, num_votes
)
AS
   SELECT phone_number
        , COUNT(*)
     FROM votes
 GROUP BY phone_number;

-- Votes per contestant and state, for the results board.
CREATE VIEW v_votes_by_contestant_number_state
(
  contestant_number
, state
, num_votes
)
AS
   SELECT contestant_number
        , state
        , COUNT(*)
     FROM votes
 GROUP BY contestant_number
        , state;

CREATE PROCEDURE FROM CLASS voter.Initialize;
CREATE PROCEDURE FROM CLASS voter.Results;
CREATE PROCEDURE FROM CLASS voter.Vote;
PARTITION PROCEDURE Vote ON TABLE votes COLUMN phone_number PARAMETER 0;
