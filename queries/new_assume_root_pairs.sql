-- name: new_assume_root_pairs
-- description: Caller and target account pairs of sts:AssumeRoot first seen since a time
-- param: since = 1970-01-01T00:00:00Z -- report pairs first seen at or after this time (UTC)
WITH pairs AS (
    SELECT caller_arn, target_account, min(event_time) AS first_seen, count(*) AS calls,
        count(*) FILTER (WHERE error_code IS NOT NULL) AS failed_calls
    FROM assume_root_events
    GROUP BY 1, 2
)
SELECT caller_arn, target_account, first_seen, calls, failed_calls
FROM pairs
WHERE first_seen >= cloudtrail_time($since)
ORDER BY first_seen;
