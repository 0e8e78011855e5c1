-- 001: the first schema. Every table carries run_id so one store holds many runs.
CREATE TABLE runs (
    run_id       VARCHAR PRIMARY KEY,
    created_at   TIMESTAMP DEFAULT current_timestamp,
    config       JSON,
    loop_version VARCHAR
);
CREATE TABLE rounds (
    run_id        VARCHAR,
    round         INTEGER,
    status        VARCHAR,          -- running | done
    model_version VARCHAR,          -- model used to sample this round
    started_at    TIMESTAMP DEFAULT current_timestamp,
    finished_at   TIMESTAMP,
    PRIMARY KEY (run_id, round)
);
CREATE TABLE steps (                -- one row per stage of a round; done = outputs committed
    run_id      VARCHAR,
    round       INTEGER,
    stage       VARCHAR,
    status      VARCHAR,
    finished_at TIMESTAMP DEFAULT current_timestamp,
    info        JSON,
    PRIMARY KEY (run_id, round, stage)
);
CREATE TABLE problems (             -- problem_id = content hash: the idempotency key
    problem_id VARCHAR PRIMARY KEY,
    source     VARCHAR,
    kind       VARCHAR,
    level      INTEGER,
    question   VARCHAR,
    answer     VARCHAR,
    meta       JSON,
    created_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE round_problems (
    run_id     VARCHAR,
    round      INTEGER,
    problem_id VARCHAR,
    PRIMARY KEY (run_id, round, problem_id)
);
CREATE TABLE samples (              -- sample_id = hash(run, round, problem, idx, model)
    sample_id         VARCHAR PRIMARY KEY,
    run_id            VARCHAR,
    round             INTEGER,
    problem_id        VARCHAR,
    idx               INTEGER,
    model_version     VARCHAR,
    backend           VARCHAR,
    sampling          JSON,         -- temperature, top_p, seed, max_new_tokens, n
    prompt_version    VARCHAR,
    completion        VARCHAR,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    finish_reason     VARCHAR,
    meta              JSON,
    verifier_version  VARCHAR,
    rewards           JSON,         -- {name: value | null}; null = cannot judge
    reward_total      DOUBLE,
    advantage         DOUBLE,
    verified          BOOLEAN,
    extracted         VARCHAR,
    created_at        TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE models (               -- model_version = content hash of the weights
    model_version VARCHAR PRIMARY KEY,
    parent        VARCHAR,
    run_id        VARCHAR,
    round         INTEGER,
    kind          VARCHAR,          -- base | lora
    base_path     VARCHAR,
    path          VARCHAR,
    data_hash     VARCHAR,
    config        JSON,
    metrics       JSON,
    created_at    TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE evaluations (          -- round 0 = before the first round
    run_id        VARCHAR,
    round         INTEGER,
    model_version VARCHAR,
    split         VARCHAR,
    n             INTEGER,
    correct       INTEGER,
    accuracy      DOUBLE,
    format_rate   DOUBLE,
    details       JSON,
    created_at    TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run_id, round, split)
);
