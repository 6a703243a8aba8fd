-- name: access_key_activity
-- description: Everything one access key did, in every account of the lake
-- param: key -- the access key ID (required)
SELECT eventtime AS event_time, recipientaccountid AS account, awsregion AS region, eventsource AS event_source,
    eventname AS event_name, errorcode AS error_code, sourceipaddress AS source_ip,
    principal_name(useridentity) AS who
FROM cloudtrail
WHERE useridentity.accesskeyid = $key
ORDER BY eventtime, eventid;
