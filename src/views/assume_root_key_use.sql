-- assume_root_key_use: every event of the target account made with the credentials an AssumeRoot call issued,
-- from the session's start until a day later, flagged when it came after the session ended.
--
-- The rules of the match, from the AWS procedure for tracking privileged tasks:
--   * the event is in the target account (recipientAccountId = target_account),
--   * it was made by the root user (userIdentity.type = 'Root'),
--   * with the issued key (userIdentity.accessKeyId = access_key_id),
--   * at or after the AssumeRoot call (5 seconds of clock skew allowed).
-- An event later than session_end plus 60 seconds of skew is a use after expiry. A root user's own sign-in
-- also gives Root events with ASIA keys, but never with a key that AssumeRoot issued: those do not match.
CREATE OR REPLACE VIEW assume_root_key_use AS
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
    a.eventtime > r.session_end + INTERVAL '60 seconds' AS after_expiry
FROM assume_root_events r
JOIN cloudtrail a
    ON a.useridentity.accesskeyid = r.access_key_id
    AND a.recipientaccountid = r.target_account
    AND a.account_id = r.target_account
WHERE a.useridentity.type = 'Root'
    AND a.eventtime >= r.event_time - INTERVAL '5 seconds'
    AND a.eventtime < r.event_time + INTERVAL '1 day'
