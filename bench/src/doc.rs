//! docs/performance.md holds one section per benchmark mode, each between
//! `<!-- bench:MODE -->` and `<!-- /bench:MODE -->`; a mode rewrites only
//! its own section and keeps the rest of the file as it is.

/// The path of the document, relative to this crate.
const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/performance.md");

/// The heading of the failover section (also given to the text of a file
/// written before there were sections).
pub const FAILOVER_HEADING: &str = "## Failover, memory and binary size";

/// Replaces (or appends) section `name` of docs/performance.md with `body`.
///
/// # Panics
///
/// When the file cannot be written.
pub fn write_section(name: &str, body: &str) {
    let old = std::fs::read_to_string(PATH).unwrap_or_default();
    let new = splice(&old, name, body);
    std::fs::write(PATH, new).unwrap_or_else(|e| panic!("cannot write {PATH}: {e}"));
}

/// The body of section `name` of docs/performance.md, if it has one.
pub fn section(name: &str) -> Option<String> {
    extract(&std::fs::read_to_string(PATH).ok()?, name)
}

/// The text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in
/// `doc`, trimmed; `None` when either marker is missing.
pub fn extract(doc: &str, name: &str) -> Option<String> {
    let open = format!("<!-- bench:{name} -->");
    let close = format!("<!-- /bench:{name} -->");
    let a = doc.find(&open)? + open.len();
    let b = a + doc[a..].find(&close)?;
    Some(doc[a..b].trim().to_string())
}

/// `doc` with section `name` replaced by `body`, or appended when missing.
fn splice(doc: &str, name: &str, body: &str) -> String {
    let doc = migrate(doc);
    let open = format!("<!-- bench:{name} -->");
    let close = format!("<!-- /bench:{name} -->");
    let block = format!("{open}\n{}\n{close}", body.trim());
    let start = doc.find(&open);
    let end = start.and_then(|a| doc[a..].find(&close).map(|b| a + b + close.len()));
    match (start, end) {
        (Some(a), Some(b)) => format!("{}{block}{}", &doc[..a], &doc[b..]),
        _ => format!("{}\n\n{block}\n", doc.trim_end()),
    }
}

/// A file from before the sections: its text (the failover table) becomes
/// the failover section, under a heading of its own.
fn migrate(doc: &str) -> String {
    if doc.contains("<!-- bench:") {
        return doc.to_string();
    }
    let rest = doc.trim();
    let rest = rest.strip_prefix("# Performance").unwrap_or(rest).trim();
    if rest.is_empty() {
        return "# Performance\n".into();
    }
    format!(
        "# Performance\n\n<!-- bench:failover -->\n{FAILOVER_HEADING}\n\n{rest}\n<!-- /bench:failover -->\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_text_becomes_the_failover_section() {
        let d = splice(
            "# Performance\n\nold table\n",
            "images",
            "## Images\n\nnew\n",
        );
        assert_eq!(
            d,
            format!(
                "# Performance\n\n<!-- bench:failover -->\n{FAILOVER_HEADING}\n\nold table\n\
                 <!-- /bench:failover -->\n\n<!-- bench:images -->\n## Images\n\nnew\n\
                 <!-- /bench:images -->\n"
            )
        );
    }

    #[test]
    fn a_section_is_replaced_and_the_others_kept() {
        let d = "# Performance\n\n<!-- bench:failover -->\nA\n<!-- /bench:failover -->\n\n\
                 <!-- bench:images -->\nB\n<!-- /bench:images -->\n";
        let e = splice(d, "failover", "A2\n");
        assert_eq!(
            e,
            "# Performance\n\n<!-- bench:failover -->\nA2\n<!-- /bench:failover -->\n\n\
             <!-- bench:images -->\nB\n<!-- /bench:images -->\n"
        );
        assert_eq!(splice(&e, "images", "B2"), e.replace("\nB\n", "\nB2\n"));
        assert_eq!(splice(&e, "images", "B"), e);
    }

    #[test]
    fn a_section_is_extracted_and_nested_markers_are_told_apart() {
        let d = "x\n<!-- bench:control -->\nA\n<!-- bench:control-deploy -->\nB\n\
                 <!-- /bench:control-deploy -->\n<!-- /bench:control -->\n";
        assert_eq!(extract(d, "control-deploy").as_deref(), Some("B"));
        assert!(extract(d, "control").is_some_and(|s| s.starts_with("A\n") && s.contains("B")));
        assert_eq!(extract(d, "images"), None);
        let e = splice(d, "control", "C");
        assert_eq!(e, "x\n<!-- bench:control -->\nC\n<!-- /bench:control -->\n");
    }

    #[test]
    fn an_empty_file_gets_a_title() {
        assert_eq!(
            splice("", "images", "X"),
            "# Performance\n\n<!-- bench:images -->\nX\n<!-- /bench:images -->\n"
        );
    }
}
