//! The schema that holds our views (src/views/), each planned the first time a statement names it.
//!
//! Planning a view resolves the lake table and every function it calls; doing that for every view at every
//! start cost more than a short query itself. A statement now pays only for the views it uses (and the views
//! those use, found the same way). As with any late binding, a view planned after the user replaced or dropped
//! a view it uses sees that change.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::datasource::ViewTable;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::optimizer::Analyzer;
use datafusion::optimizer::analyzer::type_coercion::TypeCoercion;
use parking_lot::RwLock;

/// A schema that keeps tables in `inner` and adds the views of `views` on first use.
#[derive(Debug)]
pub struct LazyViews {
    inner: Arc<dyn SchemaProvider>,
    views: &'static [(&'static str, &'static str)],
    /// Views not planned yet, and not dropped or replaced by the user.
    pending: Mutex<BTreeSet<&'static str>>,
    /// The session the views are planned in: weak, as the session holds this schema.
    state: Weak<RwLock<SessionState>>,
}

impl LazyViews {
    pub fn new(
        inner: Arc<dyn SchemaProvider>,
        views: &'static [(&'static str, &'static str)],
        state: Weak<RwLock<SessionState>>,
    ) -> LazyViews {
        let pending = Mutex::new(views.iter().map(|(name, _)| *name).collect());
        LazyViews { inner, views, pending, state }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<&'static str>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn plan(&self, name: &str, sql: &str) -> Result<Arc<dyn TableProvider>> {
        let state = match self.state.upgrade() {
            Some(state) => state.read().clone(),
            None => return plan_err!("view {name}: its session is closed"),
        };
        let plan = state
            .create_logical_plan(sql)
            .await
            .map_err(|e| DataFusionError::Plan(format!("view {name} does not build: {e}")))?;
        let LogicalPlan::Ddl(DdlStatement::CreateView(view)) = plan else {
            return plan_err!("view {name}: its file holds no CREATE VIEW");
        };
        // What SessionContext does for CREATE VIEW: the view's plan is kept type-coerced.
        let input = Analyzer::with_rules(vec![Arc::new(TypeCoercion::new())]).execute_and_check(
            Arc::unwrap_or_clone(view.input),
            state.config_options(),
            |_, _| {},
        )?;
        Ok(Arc::new(ViewTable::new(input, view.definition)))
    }
}

#[async_trait]
impl SchemaProvider for LazyViews {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(self.pending().iter().map(|n| n.to_string()));
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = self.inner.table(name).await? {
            return Ok(Some(table));
        }
        let Some(&(view, sql)) = self.views.iter().find(|(v, _)| *v == name) else { return Ok(None) };
        if !self.pending().contains(view) {
            return Ok(None);
        }
        let table = self.plan(view, sql).await?;
        // Two statements may have planned it at once: the first one registered wins.
        if self.pending().remove(view) {
            self.inner.register_table(view.to_string(), table.clone())?;
            return Ok(Some(table));
        }
        self.inner.table(name).await
    }

    fn register_table(&self, name: String, table: Arc<dyn TableProvider>) -> Result<Option<Arc<dyn TableProvider>>> {
        self.pending().remove(name.as_str());
        self.inner.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.pending().remove(name);
        self.inner.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name) || self.pending().contains(name)
    }
}
