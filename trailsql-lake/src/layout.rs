//! Where everything sits: the lake's paths (below), partition keys, and the key layout in which AWS delivers
//! CloudTrail files (`…/AWSLogs/[o-org/]<account>/CloudTrail/<region>/YYYY/MM/DD/<file>`).
//!
//! ```text
//! account_id=<id>/event_date=<YYYY-MM-DD>/part-<run>-<n>.parquet   data, visible to every reader
//! _index/account_id=…/event_date=…/part-<run>-<n>.ids             (eventID, content) hashes of each data file
//! _manifest/<seq>-<run>.json                                       commit records: sources taken, files added/removed
//! _rejects/<run>.ndjson                                            what could not be placed, with its raw text
//! _staging/<run>/…                                                 files of a run before its commit
//! _lock                                                            held by the one writer
//! _digest.json                                                     values of a few columns per partition (digest.rs)
//! ```

/// The partition an event goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// A 12-digit account ID, or [`PartitionKey::UNKNOWN_ACCOUNT`].
    pub account: String,
    /// Days since 1970-01-01 of the UTC date of eventTime.
    pub day: i32,
}

impl PartitionKey {
    /// The partition of events whose account is missing or is not a 12-digit account ID. The raw value stays in
    /// `recipientaccountid`.
    pub const UNKNOWN_ACCOUNT: &'static str = "unknown";

    /// Whether a value may be an `account_id` path segment: exactly 12 ASCII digits, as AWS account IDs are.
    pub fn is_valid_account(s: &str) -> bool {
        s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
    }

    pub fn account_or_fallback(value: Option<&str>) -> String {
        match value {
            Some(v) if Self::is_valid_account(v) => v.to_string(),
            _ => Self::UNKNOWN_ACCOUNT.to_string(),
        }
    }

    pub fn date(&self) -> String {
        day_date(self.day)
    }

    /// `account_id=<id>/event_date=<date>`.
    pub fn dir(&self) -> String {
        format!("{ACCOUNT_DIR_PREFIX}{}/event_date={}", self.account, self.date())
    }

    /// The key of a partition directory, from a path that contains `account_id=…/event_date=…`.
    pub fn from_path(path: &str) -> Option<PartitionKey> {
        let mut parts = path.split('/');
        while let Some(p) = parts.next() {
            if let Some(account) = p.strip_prefix(ACCOUNT_DIR_PREFIX) {
                let date = parts.next()?.strip_prefix("event_date=")?;
                let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
                if !(Self::is_valid_account(account) || account == Self::UNKNOWN_ACCOUNT) {
                    return None;
                }
                let day = i32::try_from((date - epoch).num_days()).ok()?;
                return Some(PartitionKey { account: account.to_string(), day });
            }
        }
        None
    }
}

/// The UTC date (`YYYY-MM-DD`) of a day since 1970-01-01, as partitions name it.
pub fn day_date(day: i32) -> String {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    epoch
        .checked_add_signed(chrono::Duration::days(i64::from(day)))
        .map_or_else(|| format!("day {day}"), |d| d.format("%Y-%m-%d").to_string())
}

/// Where an object sits in CloudTrail's delivery layout,
/// `…/AWSLogs/[o-org/]<account>/CloudTrail/<region>/<YYYY>/<MM>/<DD>/<file>`: the one parser of those keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// The segment after `AWSLogs/` (and the organization), as written: not checked to be an account ID.
    pub account: &'a str,
    /// With the date, present when the key goes on through `CloudTrail…/<region>/<YYYY>/<MM>/<DD>/`.
    pub region_date: Option<(&'a str, chrono::NaiveDate)>,
}

impl Delivery<'_> {
    pub fn of(key: &str) -> Option<Delivery<'_>> {
        let parts: Vec<&str> = key.split(['/', '\\']).collect();
        let i = parts.iter().position(|p| *p == "AWSLogs")?;
        let mut rest = &parts[i + 1..];
        if rest.first()?.starts_with("o-") {
            rest = &rest[1..];
        }
        let account = *rest.first()?;
        let region_date = (|| {
            if !rest.get(1)?.starts_with("CloudTrail") {
                return None;
            }
            let (y, m, d) = (rest.get(3)?.parse().ok()?, rest.get(4)?.parse().ok()?, rest.get(5)?.parse().ok()?);
            Some((*rest.get(2)?, chrono::NaiveDate::from_ymd_opt(y, m, d)?))
        })();
        Some(Delivery { account, region_date })
    }
}

/// The account of a CloudTrail object key: from its [`Delivery`] path, or a file name
/// `<account>_CloudTrail_<region>_…`. Only a 12-digit ID is returned.
pub fn account_from_key(key: &str) -> Option<&str> {
    if let Some(acct) = Delivery::of(key).map(|d| d.account).filter(|a| PartitionKey::is_valid_account(a)) {
        return Some(acct);
    }
    let name = key.rsplit(['/', '\\']).next()?;
    let (acct, rest) = name.split_once('_')?;
    (PartitionKey::is_valid_account(acct) && rest.starts_with("CloudTrail")).then_some(acct)
}

pub const DATA_EXT: &str = "parquet";
/// How an account's directory name starts: `account_id=<id>`.
pub const ACCOUNT_DIR_PREFIX: &str = "account_id=";

/// Whether a file name (the last segment of a path) is a data file's: a Parquet file that is not hidden or a
/// writer's temporary (`.` or `_` first).
pub fn is_data_file(name: &str) -> bool {
    name.ends_with(&format!(".{DATA_EXT}")) && !name.starts_with(['.', '_'])
}

/// What fills a lake, for the messages about a missing or empty one.
pub const FILL_HINT: &str = "`trailsql convert SOURCE... --lake DIR`";
pub(crate) const INDEX_DIR: &str = "_index";
pub const DIGEST_PATH: &str = "_digest.json";
pub(crate) const MANIFEST_DIR: &str = "_manifest";
/// The commit record of the run that is moving its files into place, while it is (see `manifest::Applying`).
pub(crate) const APPLYING_PATH: &str = "_applying.json";
pub(crate) const REJECTS_DIR: &str = "_rejects";
pub(crate) const STAGING_DIR: &str = "_staging";

pub fn data_path(key: &PartitionKey, stem: &str) -> String {
    format!("{}/{stem}.{DATA_EXT}", key.dir())
}

pub fn index_path(key: &PartitionKey, stem: &str) -> String {
    format!("{}/{stem}.ids", index_dir(key))
}

/// The directory of a partition's de-duplication index files.
pub fn index_dir(key: &PartitionKey) -> String {
    format!("{INDEX_DIR}/{}", key.dir())
}

pub fn rejects_path(run: &str) -> String {
    format!("{REJECTS_DIR}/{run}.ndjson")
}

/// Where a file of a run waits for the commit: all of a run's files in one flat directory, the final path's
/// slashes written as `@` (which no path the lake writes holds). Mirroring the partition tree cost a local run two
/// more directories per partition, created and then removed: a tenth of a convert of 2,700 partitions.
pub fn staging_path(run: &str, final_path: &str) -> String {
    format!("{STAGING_DIR}/{run}/{}", final_path.replace('/', "@"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_validated_before_becoming_paths() {
        for ok in ["123456789012", "012345678901"] {
            assert_eq!(PartitionKey::account_or_fallback(Some(ok)), ok);
        }
        for bad in [
            "",
            "../../etc",
            "1234567890123",
            "12345678901",
            "ACCOUNT_ID",
            "123456789012/",
            "12345678901\0",
            "１２３４５６７８９０１２",
            "1234567890 2",
            "..",
            "/",
        ] {
            assert_eq!(PartitionKey::account_or_fallback(Some(bad)), "unknown", "{bad:?}");
        }
        assert_eq!(PartitionKey::account_or_fallback(None), "unknown");
    }

    #[test]
    fn partition_dirs_round_trip() {
        let k = PartitionKey { account: "012345678901".into(), day: 20021 };
        assert_eq!(k.dir(), "account_id=012345678901/event_date=2024-10-25");
        assert_eq!(PartitionKey::from_path(&data_path(&k, "part-x")), Some(k.clone()));
        assert_eq!(PartitionKey::from_path("_staging/r/account_id=012345678901/event_date=2024-10-25/x"), Some(k));
        assert_eq!(PartitionKey::from_path("account_id=../event_date=2024-10-25/x"), None);
    }

    #[test]
    fn delivery_keys() {
        let d = Delivery::of("b/AWSLogs/o-abc/111122223333/CloudTrail/eu-west-1/2024/10/25/x.json.gz").unwrap();
        assert_eq!(d.account, "111122223333");
        assert_eq!(d.region_date, Some(("eu-west-1", chrono::NaiveDate::from_ymd_opt(2024, 10, 25).unwrap())));
        let no_date =
            ["AWSLogs/111122223333/CloudTrail/us-east-1/2024/13/01/x", "AWSLogs/111122223333/Config/a/2024/1/1/x"];
        for key in no_date {
            assert_eq!(Delivery::of(key).unwrap().region_date, None, "{key}");
        }
        assert_eq!(Delivery::of("logs/x.json"), None);
        assert_eq!(Delivery::of("x/AWSLogs"), None);
    }

    #[test]
    fn accounts_from_object_keys() {
        let cases = [
            ("AWSLogs/111122223333/CloudTrail/us-east-1/2024/10/25/x.json.gz", Some("111122223333")),
            ("bucket/AWSLogs/o-abc123/111122223333/CloudTrail/eu-west-1/2024/10/25/x.json.gz", Some("111122223333")),
            ("/data/218007301253_CloudTrail_us-east-1_20230710T1220Z_WMiH.json", Some("218007301253")),
            ("AWSLogs/o-abc/../../etc/CloudTrail/x.json", None),
            ("AWSLogs/ACCOUNT_ID/CloudTrail/x.json", None),
            ("logs/events.json", None),
            ("12345_CloudTrail_x.json", None),
        ];
        for (key, want) in cases {
            assert_eq!(account_from_key(key), want, "{key}");
        }
    }
}
