-- name: root_activity_not_assumeroot
-- description: Root user activity that is not an AssumeRoot session: the root user's own sign-in and credentials
SELECT event_time, account, event_source, event_name, region, source_ip, root_use, access_key_id
FROM root_activity
WHERE session_id IS NULL
ORDER BY event_time, event_id;
