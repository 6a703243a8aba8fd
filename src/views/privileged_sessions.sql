-- privileged_sessions: one row per action taken with the credentials of an sts:AssumeRoot session, in the
-- target (member) account, within the session: from the AssumeRoot call to session_end plus 60 seconds.
-- A failed AssumeRoot issued no credentials and has no rows; a session that did nothing has no rows either
-- (see privileged_session_summary). Actions may be in another Region than the AssumeRoot call (IAM logs in
-- us-east-1) and on the next day (a session can cross midnight).
CREATE OR REPLACE VIEW privileged_sessions AS
SELECT
    session_id,
    event_id AS assume_root_event_id,
    event_time AS session_start,
    session_end,
    region AS assume_root_region,
    caller_arn,
    caller_account,
    target_account,
    task_policy,
    task_policy_arn,
    access_key_id,
    action_time,
    action_source,
    action_name,
    action_region,
    action_error_code,
    action_error_message,
    action_request_parameters,
    action_resources,
    action_event_id,
    action_source_ip,
    action_user_agent,
    task_policy_allows(task_policy, action_source, action_name) AS allowed_by_task_policy
FROM assume_root_key_use
WHERE NOT after_expiry
