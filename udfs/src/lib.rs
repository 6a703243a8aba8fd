//! DataFusion scalar functions for AWS CloudTrail: ARNs, CloudTrail's time formats, access keys, source IPs,
//! principals, user agents and the root-task policies of `sts:AssumeRoot`.
//!
//! [`register_all`] is the only coupling with an application: any DataFusion session (or a distributed executor)
//! that calls it can run trailsql's SQL. Each function lives in its own file, with its documentation and tests.

pub mod access_key_kind;
pub mod any_element;
pub mod arn_parse;
pub mod arn_part;
pub mod cloudtrail_time;
mod common;
pub mod count_within;
pub mod field_values;
pub mod icontains;
pub mod ip_in_cidr;
pub mod json_values;
pub mod kept_in_place;
pub mod matches_regex;
pub mod principal_name;
pub mod root_task;
pub mod root_task_name;
pub mod source_ip_kind;
pub mod task_policy_allows;
pub mod true_indices;
pub mod user_agent_tool;
pub mod window_percentile;

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};

use arn_part::{ArnPart, Part};

/// Every function of this crate.
pub fn all() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::new_from_impl(arn_parse::ArnParse::default())),
        Arc::new(ScalarUDF::new_from_impl(ArnPart::new(Part::Account))),
        Arc::new(ScalarUDF::new_from_impl(ArnPart::new(Part::Service))),
        Arc::new(ScalarUDF::new_from_impl(ArnPart::new(Part::Region))),
        Arc::new(ScalarUDF::new_from_impl(ArnPart::new(Part::Resource))),
        Arc::new(ScalarUDF::new_from_impl(cloudtrail_time::CloudtrailTime::default())),
        Arc::new(ScalarUDF::new_from_impl(access_key_kind::AccessKeyKind::default())),
        Arc::new(ScalarUDF::new_from_impl(any_element::AnyElement::default())),
        Arc::new(ScalarUDF::new_from_impl(any_element::Element::default())),
        Arc::new(ScalarUDF::new_from_impl(field_values::FieldValues::default())),
        Arc::new(ScalarUDF::new_from_impl(icontains::IContains::default())),
        Arc::new(ScalarUDF::new_from_impl(ip_in_cidr::IpInCidr::default())),
        Arc::new(ScalarUDF::new_from_impl(json_values::JsonValues::default())),
        Arc::new(ScalarUDF::new_from_impl(kept_in_place::KeptInPlace::default())),
        Arc::new(ScalarUDF::new_from_impl(matches_regex::MatchesRegex::default())),
        Arc::new(ScalarUDF::new_from_impl(source_ip_kind::SourceIpKind::default())),
        Arc::new(ScalarUDF::new_from_impl(principal_name::PrincipalName::default())),
        Arc::new(ScalarUDF::new_from_impl(root_task_name::RootTaskName::default())),
        Arc::new(ScalarUDF::new_from_impl(task_policy_allows::TaskPolicyAllows::default())),
        Arc::new(ScalarUDF::new_from_impl(true_indices::TrueIndices::default())),
        Arc::new(ScalarUDF::new_from_impl(user_agent_tool::UserAgentTool::default())),
    ]
}

/// Every aggregate function of this crate.
pub fn aggregates() -> Vec<Arc<AggregateUDF>> {
    vec![Arc::new(AggregateUDF::new_from_impl(window_percentile::WindowPercentile::default()))]
}

/// Every window function of this crate.
pub fn windows() -> Vec<Arc<WindowUDF>> {
    vec![Arc::new(WindowUDF::new_from_impl(count_within::CountWithin::default()))]
}

/// Registers every function of this crate.
pub fn register_all(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for f in all() {
        registry.register_udf(f)?;
    }
    for f in aggregates() {
        registry.register_udaf(f)?;
    }
    for f in windows() {
        registry.register_udwf(f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_function_is_documented_with_an_example() {
        let scalar = super::all().into_iter().map(|f| (f.name().to_string(), f.documentation().cloned()));
        let aggregate = super::aggregates().into_iter().map(|f| (f.name().to_string(), f.documentation().cloned()));
        for (name, doc) in scalar.chain(aggregate) {
            let doc = doc.unwrap_or_else(|| panic!("{name} has no documentation"));
            assert!(doc.sql_example.is_some(), "{name} has no example");
            assert!(doc.syntax_example.starts_with(&name), "{name}");
        }
    }
}
