-- 002: full provenance on every sample, and step start/attempt bookkeeping.
-- samples.model_parent: the parent of samples.model_version (NULL for the base model);
-- samples.loop_version: the code version that wrote the sample.
ALTER TABLE samples ADD COLUMN model_parent VARCHAR;
ALTER TABLE samples ADD COLUMN loop_version VARCHAR;
-- steps: a step is recorded as 'running' when it starts (outside its output transaction)
-- and becomes 'done' together with its outputs; attempts counts starts (> 1 = resumed).
ALTER TABLE steps ADD COLUMN started_at TIMESTAMP;
ALTER TABLE steps ADD COLUMN attempts INTEGER;
-- Backfill what older stores already imply.
UPDATE samples SET model_parent = m.parent FROM models m WHERE m.model_version = samples.model_version;
UPDATE steps SET attempts = 1 WHERE attempts IS NULL;
