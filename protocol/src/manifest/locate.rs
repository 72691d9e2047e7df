//! Source locations for YAML paths.
//!
//! Serde reports where a *type* error happened, but many manifest errors are
//! found only after deserializing (a bad quantity, negative replicas, a
//! [`JobSpec::validate`](crate::JobSpec::validate) failure, an unknown key
//! that k8s-openapi silently skipped). To point at those, one pass over the
//! parser's events records, for every document, where each path
//! (`spec.template.spec.containers[0].image`) has its key and its value, with
//! lines counted over the whole file. The same pass splits the file into
//! per-document slices for serde, which only deserializes single documents
//! with an outer deserializer we can wrap (`serde_ignored`).

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// A 1-based line and column in the whole file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

/// What the document's root node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    /// An empty document (a trailing `---`) or an explicit null: skipped.
    Null,
    /// A mapping: a job or a Kubernetes object.
    Mapping,
    /// Anything else, named for the error message.
    Other(&'static str),
}

/// Where one path's key and value start.
#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    key: Option<Pos>,
    value: Option<Pos>,
    /// The value is a quoted (or block) scalar: a string, whatever it reads.
    quoted: bool,
}

/// One YAML document: its text for serde and its path → position index.
#[derive(Debug)]
pub(crate) struct Document<'a> {
    /// The document's text, starting at the beginning of a line.
    pub text: &'a str,
    /// Lines of the file before `text`, to turn serde's positions into file positions.
    pub line_offset: usize,
    /// Decides whether the document is skipped, converted or refused.
    pub root: Root,
    /// Top-level scalar `apiVersion`, read here so that the kind can be
    /// checked before deserializing into a kind-specific type.
    pub api_version: Option<String>,
    /// Top-level scalar `kind`, for the same reason.
    pub kind: Option<String>,
    entries: HashMap<String, Entry>,
    /// Paths in document order, so reverse lookups find the outermost node first.
    order: Vec<String>,
}

/// A syntax error found while indexing, already in file coordinates.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Joins a mapping key onto a path.
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Joins a sequence index onto a path.
pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

impl Document<'_> {
    /// Position of the root node (the start of the document's content).
    pub fn root_pos(&self) -> Pos {
        self.entry("").and_then(|e| e.value).unwrap_or(Pos {
            line: self.line_offset + 1,
            column: 1,
        })
    }

    fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// True when the path is present in the document.
    pub fn has(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    /// Where the path's key is (for "unknown field"), else its value.
    pub fn key_pos(&self, path: &str) -> Option<Pos> {
        self.entry(path).and_then(|e| e.key.or(e.value))
    }

    /// True when the path's value is a scalar written as a string (quoted or
    /// a block scalar): `"3"` is text even where a number is expected.
    pub fn is_quoted(&self, path: &str) -> bool {
        self.entry(path).is_some_and(|e| e.quoted)
    }

    /// Where the path's value is (for "bad value"), else its key.
    pub fn value_pos(&self, path: &str) -> Option<Pos> {
        self.entry(path).and_then(|e| e.value.or(e.key))
    }

    /// The value position of `path`, or of its nearest ancestor that exists:
    /// a missing `image` is reported at the container that lacks it.
    pub fn nearest_pos(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.value_pos(p) {
                return pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None if !p.is_empty() => p = "",
                None => return self.root_pos(),
            }
        }
    }

    /// The outermost path whose key (when `prefer_key`) or value starts at `pos`;
    /// used to name the field a serde error points at.
    pub fn path_at(&self, pos: Pos, prefer_key: bool) -> Option<&str> {
        let find = |want_key: bool| {
            self.order.iter().find(|p| {
                self.entries.get(p.as_str()).is_some_and(|e| {
                    let at = if want_key { e.key } else { e.value };
                    at == Some(pos)
                })
            })
        };
        let found = if prefer_key {
            find(true).or_else(|| find(false))
        } else {
            find(false).or_else(|| find(true))
        };
        found.map(String::as_str).filter(|p| !p.is_empty())
    }
}

/// An open collection while walking events.
enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

/// Splits `text` into documents and indexes each one.
///
/// Needs no alias expansion, so it is linear in the input and safe against
/// YAML bombs; serde-saphyr's own budget guards the later deserialization.
pub(crate) fn index_documents(text: &str) -> Result<Vec<Document<'_>>, SyntaxError> {
    let mut docs: Vec<Document<'_>> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| SyntaxError {
            pos: Pos {
                line: e.marker().line().max(1),
                column: e.marker().col() + 1,
            },
            message: e.info(),
        })?;
        let pos = Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        let node_kind = match &event {
            Event::DocumentStart(..) => {
                // Slices start at a line start so that columns stay unchanged.
                let start = if docs.is_empty() {
                    0
                } else {
                    let at = span.start.byte_offset().unwrap_or(0).min(text.len());
                    text[..at].rfind(['\n', '\r']).map_or(0, |i| i + 1)
                };
                docs.push(Document {
                    text: &text[start..],
                    line_offset: if start == 0 {
                        0
                    } else {
                        pos.line.saturating_sub(1)
                    },
                    root: Root::Null,
                    api_version: None,
                    kind: None,
                    entries: HashMap::new(),
                    order: Vec::new(),
                });
                stack.clear();
                continue;
            }
            Event::DocumentEnd => {
                // End the slice here so that directives of the next document
                // (after an explicit `...`) are not read as part of this one.
                if let Some(doc) = docs.last_mut() {
                    let start = text.len() - doc.text.len();
                    let end = span.end.byte_offset().unwrap_or(text.len());
                    doc.text = &text[start..end.clamp(start, text.len())];
                }
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                continue;
            }
            Event::Scalar(value, style, ..) => NodeKind::Scalar(value.as_ref(), *style),
            Event::Alias(_) => NodeKind::Alias,
            Event::MappingStart(..) => NodeKind::Map,
            Event::SequenceStart(..) => NodeKind::Seq,
            _ => continue,
        };
        let Some(doc) = docs.last_mut() else {
            continue;
        };
        let path = match stack.last_mut() {
            None => {
                doc.root = match node_kind {
                    NodeKind::Map => Root::Mapping,
                    NodeKind::Scalar(v, style) if is_null(v, style) => Root::Null,
                    NodeKind::Scalar(..) => Root::Other("scalar"),
                    NodeKind::Seq => Root::Other("sequence"),
                    NodeKind::Alias => Root::Other("alias"),
                };
                String::new()
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => key_path(path, &k),
                None => {
                    let k = match node_kind {
                        NodeKind::Scalar(v, _) => v.to_string(),
                        NodeKind::Alias => "*".to_string(),
                        // A collection as a key: keep walking under a placeholder.
                        NodeKind::Map | NodeKind::Seq => "?".to_string(),
                    };
                    let full = key_path(path, &k);
                    *key = Some(k);
                    record(doc, &full, |e| e.key = Some(pos));
                    let path = format!("{full}?");
                    match node_kind {
                        NodeKind::Map => stack.push(Frame::Map { path, key: None }),
                        NodeKind::Seq => stack.push(Frame::Seq { path, next: 0 }),
                        _ => {}
                    }
                    continue;
                }
            },
            Some(Frame::Seq { path, next }) => {
                *next += 1;
                index_path(path, *next - 1)
            }
        };
        let quoted = matches!(node_kind, NodeKind::Scalar(_, style)
            if style != serde_saphyr::granit_parser::ScalarStyle::Plain);
        record(doc, &path, |e| {
            e.value = Some(pos);
            e.quoted = quoted;
        });
        if let NodeKind::Scalar(v, _) = node_kind {
            match path.as_str() {
                "apiVersion" => doc.api_version = Some(v.to_string()),
                "kind" => doc.kind = Some(v.to_string()),
                _ => {}
            }
        }
        match node_kind {
            NodeKind::Map => stack.push(Frame::Map { path, key: None }),
            NodeKind::Seq => stack.push(Frame::Seq { path, next: 0 }),
            _ => {}
        }
    }
    Ok(docs)
}

#[derive(Clone, Copy)]
enum NodeKind<'e> {
    Scalar(&'e str, serde_saphyr::granit_parser::ScalarStyle),
    Alias,
    Map,
    Seq,
}

fn record(doc: &mut Document<'_>, path: &str, set: impl FnOnce(&mut Entry)) {
    let entry = doc.entries.entry(path.to_string()).or_insert_with(|| {
        doc.order.push(path.to_string());
        Entry::default()
    });
    set(entry);
}

/// YAML 1.2 core-schema null, written plainly (a quoted "null" is a string).
fn is_null(value: &str, style: serde_saphyr::granit_parser::ScalarStyle) -> bool {
    style == serde_saphyr::granit_parser::ScalarStyle::Plain
        && matches!(value, "" | "~" | "null" | "Null" | "NULL")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: usize, column: usize) -> Option<Pos> {
        Some(Pos { line, column })
    }

    #[test]
    fn indexes_keys_values_and_documents() {
        let text = "# c\na: 1\nb:\n  - x: 2\n    y: [3, 4]\n---\n---\nc: {d: 5}\n";
        let docs = index_documents(text).unwrap();
        assert_eq!(docs.len(), 3);
        let d = &docs[0];
        assert_eq!(d.root, Root::Mapping);
        assert_eq!(d.text, "# c\na: 1\nb:\n  - x: 2\n    y: [3, 4]\n");
        assert_eq!(d.key_pos("a"), p(2, 1));
        assert_eq!(d.value_pos("a"), p(2, 4));
        assert_eq!(d.value_pos("b[0].x"), p(4, 8));
        assert_eq!(d.value_pos("b[0].y[1]"), p(5, 12));
        assert_eq!(d.nearest_pos("b[0].z.w"), p(4, 5).unwrap());
        assert_eq!(d.path_at(p(4, 5).unwrap(), true), Some("b[0].x"));
        assert_eq!(d.path_at(p(4, 5).unwrap(), false), Some("b[0]"));
        assert_eq!(docs[1].root, Root::Null);
        let d = &docs[2];
        assert_eq!((d.text, d.line_offset), ("---\nc: {d: 5}\n", 6));
        assert_eq!(d.value_pos("c.d"), p(8, 8));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = index_documents("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(err.pos.line >= 2, "{err:?}");
    }
}
