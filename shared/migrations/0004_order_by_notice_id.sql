-- Errors listed newest first must not tie: two errors whose last notices fall in the same
-- millisecond tied on most_recent_notice_at and were broken by the (hashed) error id, so the order
-- was random. A notice id is a UUIDv7 from one monotonic sequence per gateway process: its bytes
-- order notices as they were accepted, so the list sorts by the last (and first) notice's id.

-- The first notice's id, for sort=created. Errors stored before this column existed get an id made
-- of their first_notice_at alone (version 7, zero sequence and random bits): it sorts by that time.
ALTER TABLE errors ADD COLUMN first_notice_id uuid;
UPDATE errors SET first_notice_id = (
    lpad(to_hex((extract(epoch FROM first_notice_at) * 1000)::bigint), 12, '0') || '70008000000000000000'
)::uuid;
UPDATE errors SET last_notice_id = (
    lpad(to_hex((extract(epoch FROM most_recent_notice_at) * 1000)::bigint), 12, '0') || '70008000000000000000'
)::uuid WHERE last_notice_id IS NULL;
ALTER TABLE errors ALTER COLUMN first_notice_id SET NOT NULL, ALTER COLUMN last_notice_id SET NOT NULL;

DROP INDEX errors_list;
DROP INDEX errors_project_list;
DROP INDEX errors_created_sort;
CREATE INDEX errors_list ON errors (resolved, last_notice_id DESC, id DESC);
CREATE INDEX errors_project_list ON errors (project_id, resolved, last_notice_id DESC, id DESC);
CREATE INDEX errors_created_sort ON errors (project_id, first_notice_id DESC, id DESC);
