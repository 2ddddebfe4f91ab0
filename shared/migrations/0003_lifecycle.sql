-- Lifecycle and retention: stored-notice counts for the per-error cap, deploy look-ups by environment,
-- and the indexes the dashboard filters and sorts use.

ALTER TABLE errors ADD COLUMN stored_count bigint NOT NULL DEFAULT 0;
UPDATE errors SET stored_count = notices_count;

CREATE INDEX deploys_env_latest ON deploys (project_id, environment, created_at DESC);
CREATE INDEX errors_count_sort ON errors (project_id, notices_count DESC, id DESC);
CREATE INDEX errors_created_sort ON errors (project_id, first_notice_at DESC, id DESC);
CREATE INDEX errors_over_cap ON errors (stored_count) WHERE stored_count > 100;
CREATE INDEX error_hourly_hour ON error_hourly (hour);
