-- root_activity: every event made as the root user (userIdentity.type = 'Root'), with the sts:AssumeRoot session
-- it belongs to. The session columns are NULL for the root user's own credentials and sign-in: that is real root
-- use, which generic "root account used" alarms cannot tell apart from privileged sessions.
--
-- root_use says which: 'assume-root session', 'assume-root key after expiry', 'root sign-in',
-- 'root access key' (a long-term AKIA key of the root user), or 'root credentials' (a console or other session).
CREATE OR REPLACE VIEW root_activity AS
SELECT
    a.eventtime AS event_time,
    a.recipientaccountid AS account,
    a.eventsource AS event_source,
    a.eventname AS event_name,
    a.awsregion AS region,
    a.sourceipaddress AS source_ip,
    a.useragent AS user_agent,
    a.errorcode AS error_code,
    nullif(a.useridentity.accesskeyid, '') AS access_key_id,
    a.eventid AS event_id,
    CASE
        WHEN r.session_id IS NOT NULL AND a.eventtime <= r.session_end + INTERVAL '60 seconds'
        THEN 'assume-root session'
        WHEN r.session_id IS NOT NULL THEN 'assume-root key after expiry'
        WHEN a.eventname = 'ConsoleLogin' THEN 'root sign-in'
        WHEN access_key_kind(a.useridentity.accesskeyid) = 'long-term' THEN 'root access key'
        ELSE 'root credentials'
    END AS root_use,
    r.session_id,
    r.event_id AS assume_root_event_id,
    r.caller_arn AS session_caller_arn,
    r.task_policy AS session_task_policy,
    a.account_id,
    a.event_date
FROM cloudtrail a
LEFT JOIN assume_root_events r
    ON a.useridentity.accesskeyid = r.access_key_id
    AND a.recipientaccountid = r.target_account
    AND a.eventtime >= r.event_time - INTERVAL '5 seconds'
    AND a.eventtime < r.event_time + INTERVAL '1 day'
WHERE a.useridentity.type = 'Root'
