-- name: failed_assume_root
-- description: sts:AssumeRoot calls that failed, with who tried on which account
SELECT event_time, caller_arn, target_account, task_policy, error_code, error_message, source_ip
FROM assume_root_events
WHERE error_code IS NOT NULL
ORDER BY event_time;
