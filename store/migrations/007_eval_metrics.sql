-- 007: sampled metrics of an evaluation set (evaluate.sets[].k): {"samples": n, "temperature": t,
-- "pass@k": .., "maj@k": .. per k}; NULL for a greedy-only set and for rows written before 007.
ALTER TABLE evaluations ADD COLUMN metrics JSON;
