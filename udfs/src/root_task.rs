//! The five root-task policies of `sts:AssumeRoot` and what each allows, from the data file in the repo.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// Allowed IAM actions per task policy name, from `data/root_task_policies.json`.
pub static POLICIES: LazyLock<BTreeMap<String, BTreeSet<String>>> = LazyLock::new(|| {
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(include_str!("../data/root_task_policies.json"))
            .expect("root task policies are valid JSON");
    raw.into_iter()
        .filter(|(name, _)| !name.starts_with('_'))
        .map(|(name, actions)| {
            let actions = actions
                .as_array()
                .expect("a policy lists its actions")
                .iter()
                .map(|a| a.as_str().expect("actions are strings").to_string())
                .collect();
            (name, actions)
        })
        .collect()
});

/// The short name of a root-task policy, from its ARN (`arn:aws:iam::aws:policy/root-task/<Name>`), from the
/// `{"arn": …}` object AssumeRoot's request holds, or from the name itself. NULL for anything else.
pub fn root_task_name(s: &str) -> Option<&'static str> {
    let s = s.trim();
    let owned;
    let text = if s.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        owned = v.get("arn")?.as_str()?.to_string();
        owned.as_str()
    } else {
        s
    };
    let name = match text.strip_prefix("arn:") {
        Some(_) => {
            let resource = crate::arn_parse::parse_arn(text)?.resource;
            resource.strip_prefix("policy/root-task/")?
        }
        None => text,
    };
    POLICIES.get_key_value(name).map(|(k, _)| k.as_str())
}

/// The IAM action of a CloudTrail event: the service prefix of its event source, and its event name, with the
/// names that differ between API and IAM action mapped.
pub fn iam_action(event_source: &str, event_name: &str) -> Option<String> {
    let service = event_source.strip_suffix(".amazonaws.com")?;
    let action = match (service, event_name) {
        ("s3", "ListBuckets") => "ListAllMyBuckets",
        (_, n) => n,
    };
    Some(format!("{service}:{action}"))
}

/// Whether a root-task policy allows the action of an event. `sts:GetCallerIdentity` needs no permission and is
/// always allowed. NULL (`None`) for a policy that is not a root-task policy.
pub fn task_policy_allows(policy: &str, event_source: &str, event_name: &str) -> Option<bool> {
    let name = root_task_name(policy)?;
    let action = iam_action(event_source, event_name)?;
    if action == "sts:GetCallerIdentity" {
        return Some(true);
    }
    Some(POLICIES[name].contains(&action))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_policies_are_shipped() {
        assert_eq!(POLICIES.len(), 5);
        assert!(POLICIES["S3UnlockBucketPolicy"].contains("s3:DeleteBucketPolicy"));
    }

    #[test]
    fn names_from_every_form() {
        assert_eq!(
            root_task_name("arn:aws:iam::aws:policy/root-task/S3UnlockBucketPolicy"),
            Some("S3UnlockBucketPolicy")
        );
        assert_eq!(
            root_task_name(r#"{"arn":"arn:aws:iam::aws:policy/root-task/SQSUnlockQueuePolicy"}"#),
            Some("SQSUnlockQueuePolicy")
        );
        assert_eq!(root_task_name("IAMAuditRootUserCredentials"), Some("IAMAuditRootUserCredentials"));
        assert_eq!(root_task_name("arn:aws:iam::aws:policy/AdministratorAccess"), None);
        assert_eq!(root_task_name("arn:aws:iam::aws:policy/root-task/Invented"), None);
        assert_eq!(root_task_name("{broken"), None);
    }

    #[test]
    fn allows() {
        let p = "arn:aws:iam::aws:policy/root-task/S3UnlockBucketPolicy";
        assert_eq!(task_policy_allows(p, "s3.amazonaws.com", "DeleteBucketPolicy"), Some(true));
        assert_eq!(task_policy_allows(p, "s3.amazonaws.com", "ListBuckets"), Some(true));
        assert_eq!(task_policy_allows(p, "s3.amazonaws.com", "GetObject"), Some(false));
        assert_eq!(task_policy_allows(p, "sts.amazonaws.com", "GetCallerIdentity"), Some(true));
        assert_eq!(
            task_policy_allows("IAMAuditRootUserCredentials", "iam.amazonaws.com", "CreateAccessKey"),
            Some(false)
        );
        assert_eq!(task_policy_allows("Other", "iam.amazonaws.com", "GetUser"), None);
        assert_eq!(task_policy_allows(p, "not-a-source", "GetUser"), None);
    }
}
