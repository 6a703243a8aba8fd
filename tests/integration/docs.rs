//! What the repository says about itself stays true: the README's schema, the sample data's generator.

use crate::common::*;

#[test]
fn readme_schema_is_the_schema() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let begin = "<!-- schema:begin -->\n";
    let end = "<!-- schema:end -->";
    let start = readme.find(begin).expect("README has a schema section") + begin.len();
    let stop = readme[start..].find(end).expect("schema section ends") + start;
    assert_eq!(
        &readme[start..stop],
        trailsql_lake::schema::markdown(),
        "README schema differs from schema.rs: paste the output of `trailsql schema --format markdown`"
    );
}

#[test]
fn readme_documents_every_view_and_function() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for (view, _) in trailsql::embedded::VIEWS {
        assert!(readme.contains(&format!("`{view}`")), "README does not document the view {view}");
    }
    let aggregates = trailsql_udfs::aggregates().into_iter().map(|f| f.name().to_string());
    let windows = trailsql_udfs::windows().into_iter().map(|f| f.name().to_string());
    for name in trailsql_udfs::all().into_iter().map(|f| f.name().to_string()).chain(aggregates).chain(windows) {
        assert!(readme.contains(&format!("`{name}(")), "README does not document the function {name}");
    }
    for q in trailsql::queries::builtin() {
        assert!(readme.contains(&format!("`{}`", q.name)), "README does not list the saved query {}", q.name);
    }
}

#[test]
fn sample_data_is_what_the_generator_writes() {
    let dir = tempfile::tempdir().unwrap();
    trailsql_corpus::write_sample(dir.path()).unwrap();
    let generated: Vec<_> = listing(dir.path()).into_iter().map(|(p, s, _)| (p, s)).collect();
    let committed: Vec<_> =
        listing(&sample_data()).into_iter().filter(|(p, _, _)| p != "README.md").map(|(p, s, _)| (p, s)).collect();
    assert_eq!(generated, committed, "regenerate with: cargo run --example gen_corpus -- --sample sample-data");
    for (path, _) in &generated {
        assert_eq!(
            std::fs::read(dir.path().join(path)).unwrap(),
            std::fs::read(sample_data().join(path)).unwrap(),
            "{path} differs"
        );
    }
}
