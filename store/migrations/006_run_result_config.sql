-- 006: what a run's results depend on, pinned when the run is registered.
-- runs.result_config: the parts of the config that change results (loop/run_config.py picks them);
-- runs.config_hash: sha256 of that JSON. `loop start` resuming a run with a different result_config is
-- refused naming the changed keys. NULL for runs registered before 006: their `config` (the last
-- config they ran with) is compared instead.
ALTER TABLE runs ADD COLUMN result_config JSON;
ALTER TABLE runs ADD COLUMN config_hash VARCHAR;
