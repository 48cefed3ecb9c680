//! Export: CSV with a header row (RFC 4180: CRLF line ends, fields with a
//! comma, quote or line break quoted, quotes doubled) and JSON lines (one
//! object a line, the same keys in the same order as the CSV columns).

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use crate::error::CdrError;
use crate::record::CdrRecord;
use crate::row::{COLUMNS, Row};
use crate::store::{CdrStore, Cursor, TimeRange};

/// Records read from the database per query while exporting.
const PAGE: usize = 1000;

/// An export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// CSV with a header row (`csv`).
    Csv,
    /// One JSON object per line (`json`, also `jsonl`).
    JsonLines,
}

impl ExportFormat {
    /// `csv` or `json`.
    pub const fn name(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::JsonLines => "json",
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An export format name that is not `csv`, `json` or `jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format {0:?}: use csv or json")]
pub struct UnknownFormat(pub String);

impl FromStr for ExportFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<ExportFormat, UnknownFormat> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(ExportFormat::Csv),
            "json" | "jsonl" | "ndjson" => Ok(ExportFormat::JsonLines),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

/// Writes records in one format to `out` (the CSV header first).
#[derive(Debug)]
pub struct Exporter<W: Write> {
    format: ExportFormat,
    out: W,
    count: u64,
}

impl<W: Write> Exporter<W> {
    /// Starts an export (writes the CSV header).
    pub fn new(format: ExportFormat, mut out: W) -> Result<Exporter<W>, CdrError> {
        if format == ExportFormat::Csv {
            let header: Vec<&str> = COLUMNS.to_vec();
            write_csv_line(&mut out, header.iter().copied()).map_err(CdrError::Export)?;
        }
        Ok(Exporter {
            format,
            out,
            count: 0,
        })
    }

    /// Writes one record.
    pub fn write(&mut self, record: &CdrRecord) -> Result<(), CdrError> {
        self.write_row(&Row::from(record))
    }

    pub(crate) fn write_row(&mut self, row: &Row) -> Result<(), CdrError> {
        let result = match self.format {
            ExportFormat::Csv => {
                let fields = row.csv_fields();
                write_csv_line(&mut self.out, fields.iter().map(AsRef::as_ref))
            }
            ExportFormat::JsonLines => serde_json::to_writer(&mut self.out, row)
                .map_err(std::io::Error::from)
                .and_then(|()| self.out.write_all(b"\n")),
        };
        result.map_err(CdrError::Export)?;
        self.count += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Flushes and returns the output and the number of records.
    pub fn finish(mut self) -> Result<(W, u64), CdrError> {
        self.out.flush().map_err(CdrError::Export)?;
        Ok((self.out, self.count))
    }
}

/// Writes every record of `range` from `store` to `out`, a page at a time
/// (ordered by start time); returns how many.
pub async fn export<W: Write>(
    store: &CdrStore,
    range: TimeRange,
    format: ExportFormat,
    out: W,
) -> Result<u64, CdrError> {
    let mut exporter = Exporter::new(format, out)?;
    let mut cursor: Option<Cursor> = None;
    loop {
        let rows = store.page_rows(range, cursor.as_ref(), PAGE).await?;
        for row in &rows {
            exporter.write_row(row)?;
        }
        if rows.len() < PAGE {
            break;
        }
        cursor = rows.last().map(Cursor::after_row);
    }
    exporter.finish().map(|(_, count)| count)
}

/// One CSV line (CRLF-terminated), quoting fields as RFC 4180 requires.
fn write_csv_line<'a>(
    out: &mut impl Write,
    fields: impl Iterator<Item = &'a str>,
) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(512);
    for (i, field) in fields.enumerate() {
        if i > 0 {
            line.push(b',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            line.push(b'"');
            for b in field.bytes() {
                if b == b'"' {
                    line.push(b'"');
                }
                line.push(b);
            }
            line.push(b'"');
        } else {
            line.extend_from_slice(field.as_bytes());
        }
    }
    line.extend_from_slice(b"\r\n");
    out.write_all(&line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;

    fn csv(fields: &[&str]) -> String {
        let mut out = Vec::new();
        write_csv_line(&mut out, fields.iter().copied()).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// A minimal RFC 4180 reader, to check what the writer wrote.
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        let mut row = Vec::new();
        let mut field = String::new();
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') => quoted = true,
                (false, ',') => row.push(std::mem::take(&mut field)),
                (false, '\r') => {}
                (false, '\n') => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                (false, c) => field.push(c),
            }
        }
        rows
    }

    #[test]
    fn rfc4180_quoting() {
        assert_eq!(csv(&["a", "b c", ""]), "a,b c,\r\n");
        assert_eq!(csv(&["x,y"]), "\"x,y\"\r\n");
        assert_eq!(csv(&["say \"hi\""]), "\"say \"\"hi\"\"\"\r\n");
        assert_eq!(csv(&["two\r\nlines", "z"]), "\"two\r\nlines\",z\r\n");
        let tricky = ["a,b", "\"q\"", "line\nbreak", "plain", "ünï"];
        assert_eq!(
            parse_csv(&csv(&tricky)),
            vec![tricky.map(String::from).to_vec()]
        );
    }

    #[test]
    fn csv_export_has_header_and_parses_back() {
        let mut r = sample();
        r.caller.display = Some("Smith, \"Al\"".into());
        let mut exporter = Exporter::new(ExportFormat::Csv, Vec::new()).unwrap();
        exporter.write(&r).unwrap();
        exporter.write(&sample()).unwrap();
        let (out, count) = exporter.finish().unwrap();
        assert_eq!(count, 2);
        let text = String::from_utf8(out).unwrap();
        let rows = parse_csv(&text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], COLUMNS.map(String::from).to_vec());
        assert_eq!(rows[1].len(), COLUMNS.len());
        let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
        assert_eq!(rows[1][col("caller_display")], "Smith, \"Al\"");
        assert_eq!(rows[1][col("id")], r.id.to_string());
        assert_eq!(rows[1][col("start")], "2026-11-21T14:03:07.250Z");
        assert_eq!(rows[1][col("duration_ms")], "61250");
        assert_eq!(rows[1][col("hangup_by")], "caller");
        assert!(text.ends_with("\r\n"));
    }

    #[test]
    fn json_lines_export() {
        let records = [sample(), sample()];
        let mut exporter = Exporter::new(ExportFormat::JsonLines, Vec::new()).unwrap();
        for r in &records {
            exporter.write(r).unwrap();
        }
        let (out, _) = exporter.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        let back: Vec<CdrRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, records);
    }

    #[test]
    fn format_names() {
        assert_eq!("csv".parse::<ExportFormat>().unwrap(), ExportFormat::Csv);
        assert_eq!(
            "JSON".parse::<ExportFormat>().unwrap(),
            ExportFormat::JsonLines
        );
        assert_eq!(
            "jsonl".parse::<ExportFormat>().unwrap(),
            ExportFormat::JsonLines
        );
        assert!("xml".parse::<ExportFormat>().is_err());
        assert_eq!(ExportFormat::JsonLines.to_string(), "json");
    }
}
