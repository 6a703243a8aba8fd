-- The trailsql lake and the views privileged_sessions is built on, in DuckDB's dialect, for the query benchmark:
-- the same join over the same Parquet. LAKE is replaced by the lake's path.
CREATE VIEW cloudtrail AS
SELECT * FROM read_parquet('LAKE/account_id=*/event_date=*/*.parquet', hive_partitioning = true,
                           hive_types = {'account_id': VARCHAR, 'event_date': DATE});

CREATE VIEW assume_root_events AS
WITH calls AS (
    SELECT
        eventid AS event_id,
        eventtime AS event_time,
        awsregion AS region,
        useridentity.arn AS caller_arn,
        useridentity.accountid AS caller_account,
        json_extract_string(requestparameters, '$.targetPrincipal') AS target_principal,
        json_extract_string(requestparameters, '$.taskPolicyArn.arn') AS task_policy_arn,
        TRY_CAST(json_extract(requestparameters, '$.durationSeconds') AS BIGINT) AS duration_seconds,
        nullif(json_extract_string(responseelements, '$.credentials.accessKeyId'), '') AS access_key_id,
        try_strptime(json_extract_string(responseelements, '$.credentials.expiration'), '%b %-d, %Y, %-I:%M:%S %p')
            AT TIME ZONE 'UTC' AS expiration,
        errorcode AS error_code
    FROM cloudtrail
    WHERE eventsource = 'sts.amazonaws.com' AND eventname = 'AssumeRoot'
)
SELECT
    coalesce(access_key_id, event_id) AS session_id,
    event_id, event_time, region, caller_arn, caller_account,
    coalesce(nullif(regexp_extract(target_principal, '^arn:[^:]+:iam::([0-9]{12}):', 1), ''), target_principal)
        AS target_account,
    task_policy_arn,
    nullif(regexp_extract(task_policy_arn, 'root-task/(.+)$', 1), '') AS task_policy,
    duration_seconds, access_key_id, expiration,
    CASE WHEN access_key_id IS NOT NULL
         THEN least(event_time + to_seconds(coalesce(duration_seconds, 900)), expiration) END AS session_end,
    error_code
FROM calls;

CREATE VIEW assume_root_key_use AS
SELECT
    r.*,
    a.eventtime AS action_time,
    a.eventsource AS action_source,
    a.eventname AS action_name,
    a.awsregion AS action_region,
    a.errorcode AS action_error_code,
    a.errormessage AS action_error_message,
    a.requestparameters AS action_request_parameters,
    a.resources AS action_resources,
    a.eventid AS action_event_id,
    a.sourceipaddress AS action_source_ip,
    a.useragent AS action_user_agent,
    a.eventtime > r.session_end + INTERVAL 60 SECOND AS after_expiry
FROM assume_root_events r
JOIN cloudtrail a
    ON a.useridentity.accesskeyid = r.access_key_id
    AND a.recipientaccountid = r.target_account
    AND a.account_id = r.target_account
WHERE a.useridentity.type = 'Root'
    AND a.eventtime >= r.event_time - INTERVAL 5 SECOND
    AND a.eventtime < r.event_time + INTERVAL 1 DAY;

CREATE VIEW privileged_sessions AS
SELECT * EXCLUDE (after_expiry) FROM assume_root_key_use WHERE NOT after_expiry;
