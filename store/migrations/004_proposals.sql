-- 004: self-proposed problems (every proposal, kept or rejected, with its reason),
-- curriculum retirements, and per-(problem, round) pass rates of judged samples.
CREATE TABLE proposals (            -- proposal_id = hash(run, round, source, attempt, model, completion)
    proposal_id   VARCHAR PRIMARY KEY,
    run_id        VARCHAR,
    round         INTEGER,
    model_version VARCHAR,          -- the proposer (the current model)
    attempt       INTEGER,          -- index of the generation within the round's source
    text          VARCHAR,          -- the parsed problem text (NULL when unparsable)
    problem_id    VARCHAR,          -- the stored problem when kept
    program       VARCHAR,          -- the answer program as written
    answer        VARCHAR,          -- the program's output (when it ran)
    status        VARCHAR,          -- kept | rejected
    reason        VARCHAR,          -- ok | parse:* | duplicate | near_duplicate | contaminated | program_mismatch
                                    -- | <sandbox reason> | bad_answer:* | quota
    raw           VARCHAR,          -- the whole completion
    prompt        JSON,             -- the chat messages the proposer saw
    meta          JSON,             -- finish_reason, sandbox detail, near-duplicate match, ...
    created_at    TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE retirements (          -- problems the curriculum stops resampling
    run_id     VARCHAR,
    problem_id VARCHAR,
    round      INTEGER,             -- the round whose propose stage decided it
    reason     VARCHAR,             -- always_solved | never_solved
    history    JSON,                -- [[round, pass_rate], ...]
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run_id, problem_id)
);
CREATE VIEW problem_pass_rates AS   -- judged samples only (verified IS NOT NULL)
SELECT run_id, problem_id, round, count(*) AS n,
       count(*) FILTER (WHERE verified) AS n_verified,
       count(*) FILTER (WHERE verified) / count(*) AS pass_rate
FROM samples WHERE verified IS NOT NULL
GROUP BY run_id, problem_id, round;
