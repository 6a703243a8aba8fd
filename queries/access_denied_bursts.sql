-- name: access_denied_bursts
-- description: Principals with a burst of access-denied errors in a short window (reconnaissance, broken automation)
-- param: min_errors = 10 -- errors in one window that make a burst
-- param: window = 10 minutes -- the window length, as an interval
SELECT principal_name(useridentity) AS who, useridentity.arn AS arn, recipientaccountid AS account,
    date_bin(CAST($window AS INTERVAL), eventtime) AS window_start,
    count(*) AS denied,
    count(DISTINCT eventname) AS distinct_actions,
    array_sort(array_agg(DISTINCT sourceipaddress)) AS source_ips
FROM cloudtrail
WHERE errorcode IN ('AccessDenied', 'AccessDeniedException', 'UnauthorizedOperation', 'Client.UnauthorizedOperation')
GROUP BY 1, 2, 3, 4
HAVING count(*) >= CAST($min_errors AS BIGINT)
ORDER BY denied DESC, window_start;
