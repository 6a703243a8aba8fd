-- name: privileged_sessions_window
-- description: Privileged (sts:AssumeRoot) sessions that started in a time window, with every action they took
-- param: from = 1970-01-01T00:00:00Z -- start of the window (UTC, ISO 8601)
-- param: to = 9999-12-31T23:59:59Z -- end of the window (UTC, ISO 8601)
SELECT session_start, caller_arn, target_account, task_policy, action_time, action_region, action_name,
    action_error_code
FROM privileged_sessions
WHERE session_start >= cloudtrail_time($from) AND session_start <= cloudtrail_time($to)
ORDER BY session_start, action_time;
