-- assume_root_events: one row per sts:AssumeRoot call, successful or not, from the caller's trail (the
-- Organizations management account or the delegated administrator for IAM).
--
-- target_account is requestParameters.targetPrincipal with an ARN (arn:aws:iam::222222222222:root) reduced to
-- its account ID. session_end is the earlier of eventTime + durationSeconds (900 when not given) and the
-- credentials' expiration; it is NULL for a call that issued no credentials. session_id is the issued access
-- key, or the event ID of a failed call.
CREATE OR REPLACE VIEW assume_root_events AS
WITH calls AS (
    SELECT
        eventid AS event_id,
        eventtime AS event_time,
        awsregion AS region,
        useridentity.arn AS caller_arn,
        useridentity.accountid AS caller_account,
        useridentity.principalid AS caller_principal,
        json_get_str(requestparameters, 'targetPrincipal') AS target_principal,
        json_get_str(requestparameters, 'taskPolicyArn', 'arn') AS task_policy_arn,
        json_get_int(requestparameters, 'durationSeconds') AS duration_seconds,
        nullif(json_get_str(responseelements, 'credentials', 'accessKeyId'), '') AS access_key_id,
        cloudtrail_time(json_get_str(responseelements, 'credentials', 'expiration')) AS expiration,
        errorcode AS error_code,
        errormessage AS error_message,
        sourceipaddress AS source_ip,
        useragent AS user_agent
    FROM cloudtrail
    WHERE eventsource = 'sts.amazonaws.com' AND eventname = 'AssumeRoot'
)
SELECT
    coalesce(access_key_id, event_id, concat(caller_arn, '@', CAST(event_time AS VARCHAR))) AS session_id,
    event_id,
    event_time,
    region,
    caller_arn,
    caller_account,
    caller_principal,
    coalesce(arn_account(target_principal), target_principal) AS target_account,
    task_policy_arn,
    root_task_name(task_policy_arn) AS task_policy,
    duration_seconds,
    access_key_id,
    expiration,
    CASE
        WHEN access_key_id IS NOT NULL
        THEN least(event_time + arrow_cast(coalesce(duration_seconds, 900), 'Duration(Second)'), expiration)
    END AS session_end,
    error_code,
    error_message,
    source_ip,
    user_agent
FROM calls
