-- name: first_region_use
-- description: The first use of each Region by each account, for those first seen since a time (new Regions)
-- param: since = 1970-01-01T00:00:00Z -- report Regions first used at or after this time (UTC)
WITH firsts AS (
    SELECT recipientaccountid AS account, awsregion AS region, min(eventtime) AS first_seen, count(*) AS events
    FROM cloudtrail
    WHERE awsregion IS NOT NULL AND recipientaccountid IS NOT NULL
    GROUP BY 1, 2
)
SELECT account, region, first_seen, events
FROM firsts
WHERE first_seen >= cloudtrail_time($since)
ORDER BY account, first_seen, region;
