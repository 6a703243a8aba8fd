//! What the REPL knows about the session for completion, `\d`, `\df` and `\h`: tables and views with their
//! nested columns, and functions with their documentation.

use datafusion::arrow::datatypes::{DataType, Fields, TimeUnit};
use datafusion::datasource::TableType;
use datafusion::logical_expr::Documentation;
use datafusion::prelude::SessionContext;

/// A table or view of the session.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub is_view: bool,
    pub fields: Fields,
}

/// A function of the session.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    /// scalar, aggregate or window.
    pub kind: &'static str,
    pub doc: Option<Documentation>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: Vec<Table>,
    pub functions: Vec<Function>,
}

impl Catalog {
    pub async fn load(ctx: &SessionContext) -> Catalog {
        let mut tables = Vec::new();
        if let Some(schema) = ctx.catalog("datafusion").and_then(|c| c.schema("public")) {
            let mut names = schema.table_names();
            names.sort();
            for name in names {
                if let Ok(Some(t)) = schema.table(&name).await {
                    tables.push(Table {
                        is_view: t.table_type() == TableType::View,
                        fields: t.schema().fields().clone(),
                        name,
                    });
                }
            }
        }
        let state = ctx.state();
        let mut functions: Vec<Function> = Vec::new();
        for f in state.scalar_functions().values() {
            functions.push(Function { name: f.name().to_string(), kind: "scalar", doc: f.documentation().cloned() });
        }
        for f in state.aggregate_functions().values() {
            functions.push(Function { name: f.name().to_string(), kind: "aggregate", doc: f.documentation().cloned() });
        }
        for f in state.window_functions().values() {
            functions.push(Function { name: f.name().to_string(), kind: "window", doc: f.documentation().cloned() });
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        functions.dedup_by(|a, b| a.name == b.name);
        Catalog { tables, functions }
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name.eq_ignore_ascii_case(name))
    }

    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The fields under a dotted path (`useridentity.sessioncontext`), looked up in every table.
    pub fn children(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.tables {
            let mut fields = Some(&t.fields);
            for part in path.split('.') {
                fields = fields
                    .and_then(|fs| fs.iter().find(|f| f.name().eq_ignore_ascii_case(part)))
                    .and_then(|f| nested_fields(f.data_type()));
            }
            if let Some(fs) = fields {
                out.extend(fs.iter().map(|f| f.name().clone()));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// A type as a person reads it.
pub fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Dictionary(_, v) => type_name(v),
        DataType::Boolean => "boolean".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Int32 => "int".into(),
        DataType::Float64 => "double".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => format!("timestamp ({tz})"),
        DataType::Struct(_) => "struct".into(),
        DataType::List(item) => format!("list of {}", type_name(item.data_type())),
        other => other.to_string(),
    }
}

/// The rows of `\d NAME`: each column with its nested fields as a tree, and its type.
pub fn describe(fields: &Fields) -> Vec<(String, String)> {
    let mut out = Vec::new();
    tree("", fields, true, &mut out);
    out
}

fn tree(prefix: &str, fields: &Fields, top: bool, out: &mut Vec<(String, String)>) {
    let n = fields.len();
    for (i, f) in fields.iter().enumerate() {
        let (branch, cont) = match (top, i + 1 == n) {
            (true, _) => ("", ""),
            (false, true) => ("└─ ", "   "),
            (false, false) => ("├─ ", "│  "),
        };
        out.push((format!("{prefix}{branch}{}", f.name()), type_name(f.data_type())));
        if let Some(inner) = nested_fields(f.data_type()) {
            tree(&format!("{prefix}{cont}"), inner, false, out);
        }
    }
}

/// The text of `\h NAME`.
pub fn help_text(f: &Function) -> String {
    let Some(doc) = &f.doc else { return format!("{} ({} function): no documentation\n", f.name, f.kind) };
    let mut s = format!("{}\n\n{}\n\n", doc.syntax_example, doc.description);
    if let Some(args) = &doc.arguments {
        s.push_str("Arguments:\n");
        for (name, meaning) in args {
            s.push_str(&format!("  {name}: {meaning}\n"));
        }
        s.push('\n');
    }
    if let Some(example) = &doc.sql_example {
        s.push_str(&format!("Example:\n{example}\n"));
    }
    s
}

/// The fields inside a struct, or inside the structs of a list: what a dotted path goes on into.
fn nested_fields(t: &DataType) -> Option<&Fields> {
    match t {
        DataType::Struct(inner) => Some(inner),
        DataType::List(item) => match item.data_type() {
            DataType::Struct(inner) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}
