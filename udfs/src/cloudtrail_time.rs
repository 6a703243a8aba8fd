//! `cloudtrail_time(text)`: CloudTrail's time texts as a UTC timestamp.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::TimestampMicrosecondArray;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::{Strings, doc, finish};
use trailsql_lake::time::parse_cloudtrail_time;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CloudtrailTime {
    signature: Signature,
}

impl Default for CloudtrailTime {
    fn default() -> Self {
        CloudtrailTime { signature: Signature::string(1, Volatility::Immutable) }
    }
}

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

impl ScalarUDFImpl for CloudtrailTime {
    fn name(&self) -> &str {
        "cloudtrail_time"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(utc())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let s = Strings::new(&args.args, args.number_rows)?;
        let out: TimestampMicrosecondArray =
            (0..s.rows()).map(|r| s.get(0, r).and_then(parse_cloudtrail_time)).collect();
        finish(Arc::new(out.with_timezone("UTC")), s.all_scalar())
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "Parses the time texts CloudTrail writes into a UTC timestamp: ISO 8601 in extended and basic form \
                 (2024-10-25T20:52:11Z, 20241025T205211Z, with fractions, offsets or a space), and the STS form \
                 'Oct 25, 2024, 9:07:11 PM' or 'Oct 2, 2019 11:12:29 PM'. Anything else gives NULL.",
                "cloudtrail_time(text)",
                "SELECT cloudtrail_time(responseelements->'credentials'->>'expiration') FROM cloudtrail",
            )
            .with_argument("text", "A time as CloudTrail writes it")
            .build()
        });
        Some(&DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::TimestampMicrosecondType;

    #[test]
    fn times_over_every_encoding() {
        let inputs = [Some("Oct 25, 2024, 9:07:11 PM"), Some("2024-10-25T20:52:11Z"), Some("soon"), None];
        for array in crate::common::testing::encodings(&inputs) {
            let out = crate::common::testing::call(&CloudtrailTime::default(), vec![array]);
            let t = out.as_primitive::<TimestampMicrosecondType>();
            assert_eq!(t.value(0), 1_729_890_431_000_000);
            assert_eq!(t.value(1), 1_729_889_531_000_000);
            assert!(t.is_null(2) && t.is_null(3));
        }
    }
}
