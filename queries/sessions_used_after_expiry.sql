-- name: sessions_used_after_expiry
-- description: AssumeRoot keys used after their session ended
SELECT r.session_start, r.session_end, r.caller_arn, r.target_account, r.task_policy,
    u.action_time, u.action_name, u.action_error_code
FROM privileged_session_summary r
JOIN assume_root_key_use u ON u.session_id = r.session_id AND u.after_expiry
ORDER BY u.action_time;
