-- name: console_logins_without_mfa
-- description: Successful console sign-ins without MFA
SELECT eventtime AS event_time, recipientaccountid AS account, useridentity.type AS identity_type,
    principal_name(useridentity) AS who, sourceipaddress AS source_ip
FROM cloudtrail
WHERE eventname = 'ConsoleLogin'
    AND json_get_str(additionaleventdata, 'MFAUsed') = 'No'
    AND json_get_str(responseelements, 'ConsoleLogin') = 'Success'
ORDER BY eventtime;
