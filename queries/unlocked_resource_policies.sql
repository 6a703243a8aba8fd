-- name: unlocked_resource_policies
-- description: Who unlocked which S3 bucket or SQS queue policy in a privileged session
SELECT action_time, caller_arn, target_account, task_policy, action_name,
    coalesce(json_get_str(action_request_parameters, 'bucketName'),
             json_get_str(action_request_parameters, 'queueUrl')) AS resource,
    action_error_code
FROM privileged_sessions
WHERE action_name IN ('DeleteBucketPolicy', 'PutBucketPolicy', 'SetQueueAttributes')
ORDER BY action_time;
