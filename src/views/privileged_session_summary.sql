-- privileged_session_summary: one row per sts:AssumeRoot call, with what its session did.
--
-- no_activity_found is true for a successful call with no matching action in the target account. That means
-- either the session did nothing, or the target account's logs are not in the lake: no_activity_reason says
-- which is possible, from whether the lake holds any event of the target account on the session's day.
-- used_after_expiry is true when the key was used after session_end (plus 60 seconds of skew).
-- actions_outside_task_policy is true when an action is not one the task policy allows (data:
-- udfs/data/root_task_policies.json); such a call fails with AccessDenied, but it shows intent.
CREATE OR REPLACE VIEW privileged_session_summary AS
WITH uses AS (
    SELECT * FROM assume_root_key_use
),
first_use AS (
    SELECT session_id, action_name, min(action_time) AS first_time
    FROM uses
    WHERE NOT after_expiry
    GROUP BY session_id, action_name
),
names AS (
    SELECT session_id, array_agg(action_name ORDER BY first_time, action_name) AS action_names
    FROM first_use
    GROUP BY session_id
),
stats AS (
    SELECT
        session_id,
        count(*) FILTER (WHERE NOT after_expiry) AS action_count,
        min(action_time) FILTER (WHERE NOT after_expiry) AS first_action_time,
        max(action_time) FILTER (WHERE NOT after_expiry) AS last_action_time,
        count(action_error_code) FILTER (WHERE NOT after_expiry) AS error_count,
        bool_or(after_expiry) AS used_after_expiry,
        bool_or(NOT after_expiry AND NOT coalesce(task_policy_allows(task_policy, action_source, action_name), false))
            AS actions_outside_task_policy
    FROM uses
    GROUP BY session_id
),
target_days AS (
    SELECT DISTINCT account_id, event_date FROM cloudtrail
)
SELECT
    r.session_id,
    r.event_id AS assume_root_event_id,
    r.event_time AS session_start,
    r.session_end,
    r.region AS assume_root_region,
    r.caller_arn,
    r.target_account,
    r.task_policy,
    r.access_key_id,
    r.error_code AS assume_root_error,
    coalesce(s.action_count, 0) AS action_count,
    n.action_names,
    s.first_action_time,
    s.last_action_time,
    coalesce(s.error_count, 0) AS error_count,
    r.error_code IS NULL AND coalesce(s.action_count, 0) = 0 AS no_activity_found,
    CASE
        WHEN r.error_code IS NOT NULL OR coalesce(s.action_count, 0) > 0 THEN NULL
        WHEN t.account_id IS NULL
        THEN 'no events of the target account on that day are in the lake: its logs may be missing'
        ELSE 'the target account''s logs are in the lake: the session did nothing'
    END AS no_activity_reason,
    coalesce(s.used_after_expiry, false) AS used_after_expiry,
    coalesce(s.actions_outside_task_policy, false) AS actions_outside_task_policy
FROM assume_root_events r
LEFT JOIN stats s ON s.session_id = r.session_id
LEFT JOIN names n ON n.session_id = r.session_id
LEFT JOIN target_days t ON t.account_id = r.target_account AND t.event_date = CAST(r.event_time AS DATE)
