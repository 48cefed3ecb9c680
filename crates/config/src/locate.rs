//! Mapping between dotted key paths and positions in the TOML source.

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A path from the document root to a value, e.g. `sip.listen[1].address`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// Parses a dotted path; numeric segments are array indices
    /// (`sip.listen.1.address` or `sip.listen[1].address`).
    pub fn parse(path: &str) -> Self {
        let mut segments = Vec::new();
        for part in path.split('.').filter(|p| !p.is_empty() && *p != "?") {
            let (name, rest) = match part.find('[') {
                Some(i) => (&part[..i], Some(&part[i..])),
                None => (part, None),
            };
            if !name.is_empty() {
                match name.parse::<usize>() {
                    Ok(i) => segments.push(Segment::Index(i)),
                    Err(_) => segments.push(Segment::Key(name.to_owned())),
                }
            }
            if let Some(rest) = rest {
                for idx in rest.split('[').filter(|s| !s.is_empty()) {
                    if let Ok(i) = idx.trim_end_matches(']').parse::<usize>() {
                        segments.push(Segment::Index(i));
                    }
                }
            }
        }
        KeyPath(segments)
    }

    /// Converts the display form of a `serde_ignored` path.
    pub(crate) fn from_ignored(path: &str) -> Self {
        Self::parse(path)
    }

    /// Whether this is the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The source span of the key (for table entries) or value (for array
    /// items) this path names.
    pub fn span_in(&self, root: &Spanned<DeTable<'_>>) -> Option<Range<usize>> {
        let mut table: &DeTable<'_> = root.get_ref();
        let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
        let mut span = None;
        for seg in &self.0 {
            let value = match (seg, array) {
                (Segment::Index(i), Some(items)) => {
                    let item = items.get(*i)?;
                    span = Some(item.span());
                    item
                }
                (Segment::Key(k), None) => {
                    let (key, value) = table.iter().find(|(key, _)| key.get_ref() == k)?;
                    span = Some(key.span());
                    value
                }
                _ => return None,
            };
            array = None;
            match value.get_ref() {
                DeValue::Table(t) => table = t,
                DeValue::Array(a) => array = Some(a),
                _ => {}
            }
        }
        span
    }

    /// The deepest key whose value contains `span` (where a deserialization
    /// error was reported).
    pub(crate) fn enclosing(root: &Spanned<DeTable<'_>>, span: Range<usize>) -> Option<KeyPath> {
        // Table spans do not always cover their body (a `[section]` header
        // table spans only its header), so search the whole tree and keep the
        // deepest entry whose key or value covers the error.
        fn covers(s: &Range<usize>, span: &Range<usize>) -> bool {
            s.start <= span.start && span.end <= s.end.max(s.start + 1)
        }
        fn walk_table(
            table: &DeTable<'_>,
            span: &Range<usize>,
            path: &mut Vec<Segment>,
            best: &mut Option<Vec<Segment>>,
        ) {
            for (key, value) in table.iter() {
                path.push(Segment::Key(key.get_ref().to_string()));
                if (covers(&key.span(), span) || covers(&value.span(), span))
                    && best.as_ref().is_none_or(|b| b.len() < path.len())
                {
                    *best = Some(path.clone());
                }
                walk_value(value, span, path, best);
                path.pop();
            }
        }
        fn walk_value(
            value: &Spanned<DeValue<'_>>,
            span: &Range<usize>,
            path: &mut Vec<Segment>,
            best: &mut Option<Vec<Segment>>,
        ) {
            match value.get_ref() {
                DeValue::Table(t) => walk_table(t, span, path, best),
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        path.push(Segment::Index(i));
                        if covers(&item.span(), span)
                            && best.as_ref().is_none_or(|b| b.len() < path.len())
                        {
                            *best = Some(path.clone());
                        }
                        walk_value(item, span, path, best);
                        path.pop();
                    }
                }
                _ => {}
            }
        }
        let mut best = None;
        walk_table(root.get_ref(), &span, &mut Vec::new(), &mut best);
        best.map(KeyPath)
    }

    /// Removes the entry this path names from `root`: the key from its table,
    /// or, for an array item, the whole array from its table. Returns whether
    /// something was removed.
    pub(crate) fn remove_from(&self, root: &mut Spanned<DeTable<'_>>) -> bool {
        // Cut the path back to its last table key.
        let Some(last_key) = self.0.iter().rposition(|s| matches!(s, Segment::Key(_))) else {
            return false;
        };
        let parent = &self.0[..last_key];
        let Segment::Key(name) = &self.0[last_key] else {
            return false;
        };
        let mut table: &mut DeTable<'_> = root.get_mut();
        let mut idx = 0;
        while idx < parent.len() {
            let Segment::Key(k) = &parent[idx] else {
                return false;
            };
            let Some((_, value)) = table.iter_mut().find(|(key, _)| key.get_ref() == k) else {
                return false;
            };
            let mut value = value.get_mut();
            // Follow array indices.
            while let Some(Segment::Index(i)) = parent.get(idx + 1) {
                let DeValue::Array(items) = value else {
                    return false;
                };
                let Some(item) = items.get_mut(*i) else {
                    return false;
                };
                value = item.get_mut();
                idx += 1;
            }
            let DeValue::Table(t) = value else {
                return false;
            };
            table = t;
            idx += 1;
        }
        let Some(key) = table.keys().find(|key| key.get_ref() == name).cloned() else {
            return false;
        };
        table.remove(&key).is_some()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Segment::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// 1-based line and column of byte offset `pos` in `text`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text.as_bytes()[..pos];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = text
        .get(line_start..pos)
        .map_or(pos - line_start, |s| s.chars().count())
        + 1;
    (line, column)
}
