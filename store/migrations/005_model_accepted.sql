-- 005: a model's gate verdict as real columns instead of a key inside models.metrics (JSON).
-- models.accepted: false once the evaluate stage's gate rejected the model (the current model
-- is the newest accepted one); models.rejected_because: the gate's reason, NULL while accepted.
-- The metrics JSON keeps its "accepted"/"rejected_because" keys in step (store/pipeline.py
-- reject_models), so readers of either agree.
-- DuckDB 2 enforces NOT NULL on ADD COLUMN with a constant DEFAULT (existing rows get the default);
-- an ALTER COLUMN ... SET NOT NULL after the UPDATE would fail in this same transaction
-- ("Cannot create index with outstanding updates").
ALTER TABLE models ADD COLUMN accepted BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE models ADD COLUMN rejected_because VARCHAR;
-- Backfill from the JSON field, with exactly the old readers' rule (absent = accepted).
UPDATE models SET accepted = coalesce(json_extract_string(metrics, '$.accepted'), 'true') = 'true',
                  rejected_because = json_extract_string(metrics, '$.rejected_because');
