-- 003: per-round sample totals and the run's problems (proposed, solved), so `inspect summary`
-- and the rounds table read O(rounds + problems) narrow rows instead of scanning every sample.
-- Kept by the propose, sample and verify stages inside their own transactions (store/stats.py),
-- so they always equal the aggregates over `round_problems` and `samples` they stand for.
CREATE TABLE round_stats (
    run_id          VARCHAR,
    round           INTEGER,
    samples         BIGINT,
    judged          BIGINT,           -- samples with a verdict
    verified        BIGINT,
    reward_sum      DOUBLE,           -- over judged totals (reward_total not null)
    reward_n        BIGINT,
    problems_solved BIGINT,           -- distinct problems of this round with a verified sample
    PRIMARY KEY (run_id, round)
);
CREATE TABLE run_problems (           -- a problem's first round in a run
    run_id      VARCHAR,
    problem_id  VARCHAR,
    first_round INTEGER,
    PRIMARY KEY (run_id, problem_id)
);
CREATE TABLE solved_problems (        -- a problem's first verified sample in a run
    run_id      VARCHAR,
    problem_id  VARCHAR,
    first_round INTEGER,
    PRIMARY KEY (run_id, problem_id)
);
INSERT INTO round_stats
SELECT run_id, round, count(*), count(verified), count(*) FILTER (WHERE verified), sum(reward_total),
       count(reward_total), count(DISTINCT problem_id) FILTER (WHERE verified)
FROM samples GROUP BY run_id, round;
INSERT INTO solved_problems
SELECT run_id, problem_id, min(round) FROM samples WHERE verified GROUP BY run_id, problem_id;
INSERT INTO run_problems
SELECT run_id, problem_id, min(round) FROM round_problems GROUP BY run_id, problem_id;
