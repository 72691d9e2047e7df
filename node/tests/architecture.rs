//! What may call what, checked.
//!
//! [`RULES`] and [`CRATE_RULES`] are the one table of forbidden imports;
//! docs/ARCHITECTURE.md ("What may call what") shows the same table, row
//! for row, and [`the_architecture_doc_shows_every_rule`] keeps the two
//! equal. The check reads `node/src/**/*.rs` as text: every `crate::…` and
//! `super::…` path outside comments, string literals and `#[cfg(test)]`
//! items (test modules in their own files included) is an import of the
//! module it names. A simple scan, no parser: enough for `use` lines and
//! paths written in place.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Who a rule binds.
enum Who {
    /// This module (`mesh`, `migrate::v0_1`) and its submodules.
    Module(&'static str),
    /// Every module but these (and the forbidden one itself).
    AllBut(&'static [&'static str]),
}

/// What a rule forbids.
enum Forbid {
    /// These top-level modules.
    Modules(&'static [&'static str]),
    /// Anything of the crate outside the module itself.
    Crate,
}

/// One forbidden edge, or set of them, and why.
struct Rule {
    who: Who,
    forbid: Forbid,
    why: &'static str,
}

/// Modules that do I/O or hold the node together: what the pure parts
/// (`state`, `scheduler`) never import.
const IO: &[&str] = &[
    "mesh", "raft", "runtime", "api", "context", "control", "executor", "rpc", "inbound", "images",
    "agent",
];

/// The forbidden imports between the node's modules.
const RULES: &[Rule] = &[
    Rule {
        who: Who::Module("mesh"),
        forbid: Forbid::Modules(&[
            "raft",
            "state",
            "rpc",
            "control",
            "api",
            "context",
            "wire",
            "inbound",
            "membership",
        ]),
        why: "the mesh carries opaque bytes; what they mean is `rpc`'s",
    },
    Rule {
        who: Who::Module("state"),
        forbid: Forbid::Modules(IO),
        why: "the state and its `apply` are pure and deterministic",
    },
    Rule {
        who: Who::Module("scheduler"),
        forbid: Forbid::Modules(IO),
        why: "placement is pure",
    },
    Rule {
        who: Who::AllBut(&["agent", "api", "inbound"]),
        forbid: Forbid::Modules(&["context"]),
        why: "`NodeCtx` is the API's and `inbound`'s handle bag; loops get the handles they use",
    },
    Rule {
        who: Who::AllBut(&["agent", "inbound"]),
        forbid: Forbid::Modules(&["api"]),
        why: "nothing calls the API but forwarded calls (`inbound`) and the wiring (`agent`)",
    },
    Rule {
        who: Who::Module("executor"),
        forbid: Forbid::Modules(&["mesh", "rpc", "inbound", "api", "control"]),
        why: "the executor never talks to the network itself",
    },
    Rule {
        who: Who::Module("events"),
        forbid: Forbid::Modules(&["control", "executor", "images", "api", "inbound"]),
        why: "events is a sink every loop reports into; it calls none of them back",
    },
    Rule {
        who: Who::Module("migrate::v0_1"),
        forbid: Forbid::Crate,
        why: "frozen copies of 0.1.0's types, never edited",
    },
];

/// Dependencies between the workspace's crates: (crate dir, forbidden
/// dependency prefix, why).
const CRATE_RULES: &[(&str, &str, &str)] = &[(
    "protocol",
    "skein",
    "the types every component speaks do no I/O and depend on no other Skein crate",
)];

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Rule {
    fn who(&self) -> String {
        match self.who {
            Who::Module(m) => format!("`{m}`"),
            Who::AllBut(but) => format!("all but {}", list(but)),
        }
    }

    fn forbidden(&self) -> String {
        match self.forbid {
            Forbid::Modules(m) => list(m),
            Forbid::Crate => "anything of the crate".to_string(),
        }
    }

    /// The rule's row in docs/ARCHITECTURE.md.
    fn row(&self) -> String {
        format!("| {} | {} | {} |", self.who(), self.forbidden(), self.why)
    }

    /// Whether the rule binds the module at `path`.
    fn binds(&self, path: &[String]) -> bool {
        let Some(top) = path.first() else {
            return false; // lib.rs declares modules, imports nothing.
        };
        match self.who {
            Who::Module(m) => starts_with(path, m),
            Who::AllBut(but) => !but.contains(&top.as_str()),
        }
    }

    /// Whether `import` (a path from the crate root) breaks the rule for
    /// the module at `path`.
    fn breaks(&self, path: &[String], import: &[String]) -> bool {
        let (Some(top), Some(target)) = (path.first(), import.first()) else {
            return false;
        };
        match self.forbid {
            Forbid::Modules(m) => target != top && m.contains(&target.as_str()),
            Forbid::Crate => match self.who {
                Who::Module(m) => !starts_with(import, m),
                Who::AllBut(_) => target != top,
            },
        }
    }
}

fn crate_row((dir, dep, why): &(&str, &str, &str)) -> String {
    format!("| `{dir}` (crate) | any `{dep}-*` crate | {why} |")
}

fn starts_with(path: &[String], module: &str) -> bool {
    let m: Vec<&str> = module.split("::").collect();
    path.len() >= m.len() && path.iter().zip(&m).all(|(a, b)| a == b)
}

/// `src`, with comments and string and char literals blanked (newlines
/// kept, so that offsets keep their line).
fn code_only(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident(b[i - 1]))
        {
            // Raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (1..=hashes).all(|k| b.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                out.push(blank(ch));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{..}'.
            out.push_str("  ");
            i += 2;
            while i < b.len() && b[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && b.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `code` with every `#[cfg(test)]` item blanked; the names of the test
/// modules declared as files (`#[cfg(test)] mod tests;`) are returned.
fn without_tests(code: &str) -> (String, Vec<String>) {
    const ATTR: &str = "#[cfg(test)]";
    let mut out: Vec<char> = code.chars().collect();
    let text: String = out.iter().collect();
    let mut test_files = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(ATTR) {
        let start = from + at;
        let item = start + ATTR.len();
        let mut depth = 0usize;
        let mut end = text.len();
        for (k, ch) in text[item..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = item + k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = item + k + 1;
                    let decl: Vec<&str> = text[item..end - 1].split_whitespace().collect();
                    if let ["mod", name] | ["pub", "mod", name] | ["pub(crate)", "mod", name] =
                        decl.as_slice()
                    {
                        test_files.push((*name).to_string());
                    }
                    break;
                }
                _ => {}
            }
        }
        // Byte offsets to char offsets: the code is ASCII where it matters,
        // but blank by chars to stay correct on any text.
        let (cs, ce) = (text[..start].chars().count(), text[..end].chars().count());
        for ch in &mut out[cs..ce] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        from = end;
    }
    (out.into_iter().collect(), test_files)
}

/// The imports in `code` of the module at `module` (its path from the
/// crate root): each as (line, path from the crate root).
fn imports(code: &str, module: &[String]) -> Vec<(usize, Vec<String>)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == '$');
        let rest: String = chars[i..chars.len().min(i + 7)].iter().collect();
        let base: Option<Vec<String>> = if !boundary {
            None
        } else if rest.starts_with("crate::") {
            i += "crate::".len();
            Some(Vec::new())
        } else if rest.starts_with("super::") {
            // From `a::b` (file a/b.rs), `super` is `a`; from a top-level
            // module, the crate root.
            let mut base = module.to_vec();
            while chars[i..].iter().collect::<String>().starts_with("super::") {
                base.pop();
                i += "super::".len();
            }
            Some(base)
        } else {
            None
        };
        let Some(base) = base else {
            i += 1;
            continue;
        };
        for (at, tail) in heads(&chars, &mut i) {
            let line = chars[..at].iter().filter(|c| **c == '\n').count() + 1;
            let mut p = base.clone();
            p.extend(tail);
            out.push((line, p));
        }
    }
    out
}

/// The path(s) starting at `chars[*i]`, each with the offset where it
/// starts: `a::b::C` gives `[a, b, C]`; `{a::b, c}` gives `[a, b]` and
/// `[c]`. Advances `i`.
fn heads(chars: &[char], i: &mut usize) -> Vec<(usize, Vec<String>)> {
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    skip_ws(i);
    if chars.get(*i) == Some(&'{') {
        *i += 1;
        let mut all = Vec::new();
        loop {
            skip_ws(i);
            match chars.get(*i) {
                None => break,
                Some('}') => {
                    *i += 1;
                    break;
                }
                Some(',') => *i += 1,
                Some(_) => {
                    let before = *i;
                    all.extend(heads(chars, i));
                    if *i == before {
                        *i += 1; // `*`, `self` handled as a segment; anything else skipped.
                    }
                }
            }
        }
        return all;
    }
    let at = *i;
    let mut path = Vec::new();
    loop {
        let start = *i;
        while *i < chars.len() && is_ident(chars[*i]) {
            *i += 1;
        }
        if *i == start {
            break;
        }
        path.push(chars[start..*i].iter().collect::<String>());
        if chars.get(*i) == Some(&':') && chars.get(*i + 1) == Some(&':') {
            *i += 2;
            if chars.get(*i) == Some(&'{') {
                let base = path.clone();
                return heads(chars, i)
                    .into_iter()
                    .map(|(at, t)| (at, base.iter().cloned().chain(t).collect()))
                    .collect();
            }
        } else {
            break;
        }
    }
    if path.is_empty() {
        Vec::new()
    } else {
        vec![(at, path)]
    }
}

/// The module path of a file under `src` (`a/mod.rs` and `a.rs` are `a`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// One forbidden import found.
#[derive(Debug)]
struct Violation {
    message: String,
}

/// Every import in `files` (display name, module path, text) that a rule
/// forbids. Test modules declared as files are skipped.
fn violations(files: &[(String, Vec<String>, String)]) -> (Vec<Violation>, usize) {
    let mut cleaned = Vec::new();
    let mut test_modules: BTreeSet<Vec<String>> = BTreeSet::new();
    for (name, module, text) in files {
        let (code, tests) = without_tests(&code_only(text));
        for t in tests {
            let mut p = module.clone();
            p.push(t);
            test_modules.insert(p);
        }
        cleaned.push((name, module, code));
    }
    let mut found = Vec::new();
    let mut edges = 0;
    for (name, module, code) in cleaned {
        if test_modules
            .iter()
            .any(|t| module.len() >= t.len() && module[..t.len()] == t[..])
        {
            continue;
        }
        for (line, import) in imports(&code, module) {
            edges += 1;
            for rule in RULES.iter().filter(|r| r.binds(module)) {
                if rule.breaks(module, &import) {
                    found.push(Violation {
                        message: format!(
                            "{name} imports crate::{}, which ARCHITECTURE.md forbids: {} may not import {} ({}) (line {line})",
                            import.join("::"),
                            rule.who(),
                            rule.forbidden(),
                            rule.why,
                        ),
                    });
                }
            }
        }
    }
    (found, edges)
}

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn node_sources() -> Vec<(String, Vec<String>, String)> {
    let src = node_dir().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|f| {
            let text = fs::read_to_string(&f).expect("readable source");
            let name = format!(
                "node/src/{}",
                f.strip_prefix(&src).expect("under src").display()
            );
            (name, module_of(&src, &f), text)
        })
        .collect()
}

#[test]
fn no_module_imports_what_the_architecture_forbids() {
    let sources = node_sources();
    assert!(sources.len() > 50, "node/src read: {} files", sources.len());
    let (found, edges) = violations(&sources);
    assert!(edges > 100, "the scan found only {edges} imports");
    let mut msg = String::new();
    for v in &found {
        let _ = writeln!(msg, "{}", v.message);
    }
    assert!(found.is_empty(), "forbidden imports:\n{msg}");
}

#[test]
fn the_protocol_crate_depends_on_no_other_skein_crate() {
    for rule in CRATE_RULES {
        let (dir, dep, why) = rule;
        let manifest = node_dir().join("..").join(dir).join("Cargo.toml");
        let text = fs::read_to_string(&manifest).expect("crate manifest");
        let mut section = String::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            let key = line.split(['=', '.', ' ']).next().unwrap_or("");
            assert!(
                !(section.contains("dependencies") && key.starts_with(dep)),
                "{dir}/Cargo.toml depends on {key} (line {}), which ARCHITECTURE.md forbids: \
                 `{dir}` may not depend on any `{dep}-*` crate ({why})",
                n + 1
            );
        }
    }
}

#[test]
fn the_architecture_doc_shows_every_rule() {
    let doc = fs::read_to_string(node_dir().join("../docs/ARCHITECTURE.md")).expect("doc");
    let rows = RULES
        .iter()
        .map(Rule::row)
        .chain(CRATE_RULES.iter().map(crate_row));
    let missing: Vec<String> = rows.filter(|r| !doc.contains(r.as_str())).collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md (What may call what) lacks these rows of \
         node/tests/architecture.rs:\n{}",
        missing.join("\n")
    );
}

/// The scan itself: imports are found in `use` groups and in place, from
/// `super`, and not in comments, strings or tests.
#[test]
fn the_scan_finds_forbidden_imports_and_only_those() {
    let file = |name: &str, text: &str| {
        let module: Vec<String> = name
            .trim_end_matches(".rs")
            .trim_end_matches("/mod")
            .split('/')
            .map(String::from)
            .collect();
        (format!("node/src/{name}"), module, text.to_string())
    };
    let bad = [
        file("mesh/mod.rs", "use crate::{clock, raft::SkeinRaft};\n"),
        file(
            "mesh/codec.rs",
            "fn f() { let _ = super::super::state::X; }\n",
        ),
        file("events.rs", "use crate::context::NodeCtx;\n"),
        file(
            "migrate/v0_1.rs",
            "use serde::Deserialize;\nuse super::Schema;\n",
        ),
        file(
            "scheduler/place.rs",
            "use crate::{\n    state::Job,\n    mesh::Mesh,\n};\n",
        ),
        file("control/mod.rs", "fn f() { crate::api::router(); }\n"),
    ];
    let (found, _) = violations(&bad);
    let got: Vec<&str> = found.iter().map(|v| v.message.as_str()).collect();
    assert_eq!(found.len(), bad.len(), "{got:#?}");
    assert!(
        got[0].starts_with(
            "node/src/mesh/mod.rs imports crate::raft::SkeinRaft, which ARCHITECTURE.md forbids: `mesh`"
        ),
        "{}",
        got[0]
    );
    assert!(got[1].contains("imports crate::state::X"), "{}", got[1]);
    assert!(
        got[3].contains("imports crate::migrate::Schema"),
        "{}",
        got[3]
    );
    assert!(got[4].contains("imports crate::mesh::Mesh"), "{}", got[4]);
    assert!(got[4].contains("(line 3)"), "{}", got[4]);

    let fine = [
        file(
            "mesh/mod.rs",
            "//! Bytes only (`crate::rpc` decodes them).\n\
             /* crate::raft */ const S: &str = \"crate::state\";\n\
             const R: &str = r#\"crate::api\"#; const C: char = '{';\n\
             use self::swarm::Swarm; use super::mesh::codec; macro_rules! m { () => { $crate::x } }\n\
             #[cfg(test)]\nmod tests {\n    use crate::rpc::PeerRequest;\n    fn f() { if true { } }\n}\n\
             #[cfg(test)]\nmod more_tests;\n",
        ),
        file("mesh/more_tests.rs", "use crate::raft::SkeinRaft;\n"),
        file("api/mod.rs", "use crate::context::NodeCtx;\n"),
        file("inbound.rs", "use crate::api::forward::Forwarded;\n"),
        file("migrate/v0_1.rs", "use serde::Deserialize; use self::inner::X;\n"),
    ];
    let (found, edges) = violations(&fine);
    assert!(found.is_empty(), "{found:#?}");
    // super::mesh::codec, crate::context, crate::api (not self::, not $crate).
    assert_eq!(edges, 3);
}
