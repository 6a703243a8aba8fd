//! `any_element(list, condition)`: whether some element of a list meets a condition written with `element()`.
//!
//! DataFusion evaluates `any_match(list, v -> condition)`, but lambdas parse only in the SQL dialects whose `->`
//! is a lambda (DuckDB, Spark…), and trailsql's is the one where `->` reads JSON (`requestparameters->'key'`).
//! This pair says the same in any dialect: `any_element(json_values(p, 'k'), icontains(element(), 'x'))`. The
//! optimizer's simplification turns it into `any_match` with a lambda before it runs, wherever the functions are
//! registered (a Ballista scheduler too); neither function is ever invoked itself.

use std::sync::LazyLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::functions_nested::array_any_match::array_any_match_higher_order_function;
use datafusion::logical_expr::expr::{HigherOrderFunction, Lambda, LambdaVariable};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility, cast,
};

use crate::common::{doc, text_list};

/// The name of the lambda's parameter once the pair is rewritten.
const PARAMETER: &str = "element";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AnyElement {
    signature: Signature,
}

impl Default for AnyElement {
    fn default() -> Self {
        AnyElement { signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for AnyElement {
    fn name(&self) -> &str {
        "any_element"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..), DataType::Boolean] => {
                Ok(DataType::Boolean)
            }
            _ => plan_err!("any_element takes a list and a boolean condition on element(), not {args:?}"),
        }
    }
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let [list, condition] = <[Expr; 2]>::try_from(args).expect("the signature takes two arguments");
        // element() was typed as text where the condition was planned: the lambda's parameter must be text too.
        let list = if info.get_data_type(&list)? == text_list() { list } else { cast(list, text_list()) };
        let body = condition
            .transform_up(|e| {
                Ok(if is_element(&e) {
                    Transformed::yes(Expr::LambdaVariable(LambdaVariable::new(PARAMETER.into(), None)))
                } else {
                    Transformed::no(e)
                })
            })?
            .data;
        let call = Expr::HigherOrderFunction(HigherOrderFunction::new(
            array_any_match_higher_order_function(),
            vec![list, Expr::Lambda(Lambda::new(vec![PARAMETER.into()], body))],
        ));
        Ok(ExprSimplifyResult::Simplified(call.resolve_lambda_variables(info.schema())?.data))
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("any_element is rewritten into any_match by the optimizer; it ran without it")
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "Whether some element of a list meets a condition, written with element() for the element: \
                 any_match(list, element -> condition) in a dialect without lambdas. False for an empty list, \
                 NULL for a NULL list.",
                "any_element(list, condition)",
                "SELECT eventname FROM cloudtrail WHERE any_element(json_values(requestparameters, \
                 'containerDefinitions', 'command'), icontains(element(), 'AWS_CONTAINER_CREDENTIALS'))",
            )
            .with_argument("list", "A list")
            .with_argument("condition", "A boolean expression of element()")
            .build()
        });
        Some(&DOC)
    }
}

fn is_element(e: &Expr) -> bool {
    matches!(e, Expr::ScalarFunction(f) if f.func.name() == "element" && f.args.is_empty())
}

/// The element that `any_element` tests: text, as `json_values` lists it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Element {
    signature: Signature,
}

impl Default for Element {
    fn default() -> Self {
        // Volatile: constant folding would otherwise evaluate it, having no arguments, before it is replaced.
        Element { signature: Signature::nullary(Volatility::Volatile) }
    }
}

impl ScalarUDFImpl for Element {
    fn name(&self) -> &str {
        "element"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("element() stands for an element of any_element's list, and only there")
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "The element of the list that any_element tests, as text; meaningless outside any_element.",
                "element()",
                "SELECT any_element(make_array('a', 'B'), lower(element()) = 'b')",
            )
            .build()
        });
        Some(&DOC)
    }
}
