-- name: sessions_outside_task_policy
-- description: Actions of privileged sessions that their root-task policy does not allow
SELECT session_start, caller_arn, target_account, task_policy, action_time, action_source, action_name,
    action_error_code
FROM privileged_sessions
WHERE NOT coalesce(allowed_by_task_policy, false)
ORDER BY action_time;
