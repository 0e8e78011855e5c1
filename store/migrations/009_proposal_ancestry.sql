-- 009: each proposal's ancestry (loop/proposer/generate.py, loop/proposer/programs.py).
-- proposals.shots: the few-shot examples its prompt showed, in prompt order:
-- [{"problem_id": id | null, "source": "self" | "arithmetic" | "starter" | "code" | ..., "sha256": hash}]
-- (sha256: first 16 hex digits of the example's assistant turn exactly as shown);
-- problem_id is null for a fill-in without one (a starter word problem, a procedural code program).
-- NULL for proposals stored before this migration.
ALTER TABLE proposals ADD COLUMN shots JSON;
