-- name: sessions_without_activity
-- description: Successful AssumeRoot sessions with no action found, and whether the target account's logs are missing
SELECT session_start, caller_arn, target_account, task_policy, no_activity_reason
FROM privileged_session_summary
WHERE no_activity_found
ORDER BY session_start;
