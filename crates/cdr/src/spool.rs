//! The local spool: records that could not reach the database, one JSON
//! object a line, appended and fsync'ed a batch at a time, read back in
//! chunks when the database is back, then truncated.
//!
//! Blocking file I/O: the writer task calls it from `spawn_blocking`.
//! Lines that cannot be read back (a line cut by a crash, a damaged file)
//! are moved to `<spool>.bad` rather than dropped.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use crate::error::CdrError;
use crate::record::CdrRecord;

/// Longest line read back; anything longer is damage, not a record.
const MAX_LINE: u64 = 1 << 20;

/// The spool file and how many records it holds.
#[derive(Debug)]
pub(crate) struct Spool {
    path: PathBuf,
    /// The append handle, opened on first use.
    file: Option<File>,
    /// Records (non-blank lines) in the file.
    lines: u64,
}

/// What one read of the spool returned.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// Records read.
    pub(crate) records: Vec<CdrRecord>,
    /// Lines that are not records.
    pub(crate) bad: Vec<Vec<u8>>,
    /// Whether the end of the file was reached.
    pub(crate) end: bool,
}

/// Reads the spool from the start, a chunk at a time.
#[derive(Debug)]
pub(crate) struct SpoolReader {
    reader: BufReader<File>,
    /// Bytes consumed so far.
    offset: u64,
    /// Non-blank lines consumed so far (records and unreadable lines).
    consumed: u64,
}

impl Spool {
    /// Opens the spool at `path` (creating its directory; the file itself
    /// is created by the first append) and counts the records in it.
    pub(crate) fn open(path: &Path) -> Result<Spool, CdrError> {
        let fail = |source| CdrError::Spool {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        let lines = match File::open(path) {
            Ok(file) => count_lines(file).map_err(fail)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(fail(e)),
        };
        Ok(Spool {
            path: path.to_owned(),
            file: None,
            lines,
        })
    }

    /// Records in the file (read back or not).
    pub(crate) fn backlog(&self) -> u64 {
        self.lines
    }

    fn error(&self, source: io::Error) -> CdrError {
        CdrError::Spool {
            path: self.path.clone(),
            source,
        }
    }

    fn append_handle(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let created = !self.path.exists();
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&self.path)?;
            if created {
                // Make the new directory entry durable too.
                if let Some(parent) = self.path.parent() {
                    let dir = if parent.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        parent
                    };
                    File::open(dir)?.sync_all()?;
                }
            }
            self.file = Some(file);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("spool file not open"))
    }

    /// Appends `records` and fsyncs the file before returning.
    pub(crate) fn append(&mut self, records: &[CdrRecord]) -> Result<(), CdrError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut text = Vec::with_capacity(records.len() * 512);
        for record in records {
            serde_json::to_writer(&mut text, record).map_err(|e| self.error(e.into()))?;
            text.push(b'\n');
        }
        let result = (|| {
            let file = self.append_handle()?;
            // A line cut short by a crash must not swallow the next record.
            let len = file.metadata()?.len();
            if len > 0 {
                let mut last = [0u8; 1];
                file.seek(SeekFrom::Start(len - 1))?;
                file.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    file.write_all(b"\n")?;
                }
            }
            file.write_all(&text)?;
            file.sync_data()
        })();
        result.map_err(|e| self.error(e))?;
        self.lines += records.len() as u64;
        Ok(())
    }

    /// A reader from the start of the file (`None` when there is none).
    pub(crate) fn reader(&self) -> Result<Option<SpoolReader>, CdrError> {
        match File::open(&self.path) {
            Ok(file) => Ok(Some(SpoolReader {
                reader: BufReader::with_capacity(64 * 1024, file),
                offset: 0,
                consumed: 0,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Removed behind our back: nothing to read.
                Ok(None)
            }
            Err(e) => Err(self.error(e)),
        }
    }

    /// Forgets the records counted in a file that is gone.
    pub(crate) fn forget(&mut self) {
        self.lines = 0;
    }

    /// Truncates the file if `reader` read all of it (nothing was appended
    /// since); returns whether it did.
    pub(crate) fn clear_if_read(&mut self, reader: &SpoolReader) -> Result<bool, CdrError> {
        let len = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(self.error(e)),
        };
        if len != reader.offset {
            return Ok(false);
        }
        let result = (|| {
            let file = self.append_handle()?;
            file.set_len(0)?;
            file.sync_data()
        })();
        result.map_err(|e| self.error(e))?;
        self.lines = 0;
        Ok(true)
    }

    /// The file unreadable lines are moved to.
    pub(crate) fn bad_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".bad");
        PathBuf::from(name)
    }

    /// Appends unreadable lines to [`Spool::bad_path`] (fsync'ed).
    pub(crate) fn quarantine(&mut self, lines: &[Vec<u8>]) -> Result<(), CdrError> {
        if lines.is_empty() {
            return Ok(());
        }
        let path = self.bad_path();
        let result = (|| {
            let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
            for line in lines {
                file.write_all(line)?;
                file.write_all(b"\n")?;
            }
            file.sync_data()
        })();
        result.map_err(|source| CdrError::Spool { path, source })
    }
}

impl SpoolReader {
    /// Non-blank lines read so far.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Reads up to `max` lines; `end` is set as soon as nothing follows.
    pub(crate) fn next_chunk(&mut self, max: usize) -> io::Result<Chunk> {
        let mut chunk = Chunk::default();
        let mut line = Vec::new();
        while chunk.records.len() + chunk.bad.len() < max {
            line.clear();
            let read = (&mut self.reader)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)?;
            if read == 0 {
                chunk.end = true;
                break;
            }
            self.offset += read as u64;
            if line.last() != Some(&b'\n') && read as u64 == MAX_LINE {
                // Oversized: skip to the end of the line, keep its start.
                let mut rest = Vec::new();
                self.offset += self.reader.read_until(b'\n', &mut rest)? as u64;
                self.consumed += 1;
                chunk.bad.push(line.clone());
                continue;
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.consumed += 1;
            // A last line without its newline (cut by a crash) parses
            // only if its record is whole: then it is kept too.
            match serde_json::from_slice::<CdrRecord>(text) {
                Ok(record) => chunk.records.push(record),
                Err(_) => chunk.bad.push(text.to_vec()),
            }
        }
        if !chunk.end && self.reader.fill_buf()?.is_empty() {
            chunk.end = true;
        }
        Ok(chunk)
    }
}

/// Non-empty lines in a file (a last line without newline counts).
fn count_lines(file: File) -> io::Result<u64> {
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut count = 0u64;
    let mut in_line = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        for &b in buf {
            if b == b'\n' {
                if in_line {
                    count += 1;
                }
                in_line = false;
            } else if !b.is_ascii_whitespace() {
                in_line = true;
            }
        }
        let n = buf.len();
        reader.consume(n);
    }
    Ok(count + u64::from(in_line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordId;
    use crate::record::tests::sample;

    fn records(n: usize) -> Vec<CdrRecord> {
        (0..n)
            .map(|_| {
                let mut r = sample();
                r.id = RecordId::random();
                r
            })
            .collect()
    }

    fn read_all(spool: &Spool) -> (Vec<CdrRecord>, Vec<Vec<u8>>, SpoolReader) {
        let mut reader = spool.reader().unwrap().unwrap();
        let (mut all, mut bad) = (Vec::new(), Vec::new());
        loop {
            let chunk = reader.next_chunk(3).unwrap();
            all.extend(chunk.records);
            bad.extend(chunk.bad);
            if chunk.end {
                return (all, bad, reader);
            }
        }
    }

    #[test]
    fn append_read_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cdr-spool.jsonl");
        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(spool.backlog(), 0);
        assert!(spool.reader().unwrap().is_none());
        let first = records(4);
        let second = records(3);
        spool.append(&first).unwrap();
        spool.append(&second).unwrap();
        assert_eq!(spool.backlog(), 7);
        // Reopening counts what is there.
        assert_eq!(Spool::open(&path).unwrap().backlog(), 7);
        let (all, bad, reader) = read_all(&spool);
        assert!(bad.is_empty());
        assert_eq!(all, [first, second].concat());
        // Something appended after the read: not cleared.
        let mut other = Spool::open(&path).unwrap();
        other.append(&records(1)).unwrap();
        assert!(!spool.clear_if_read(&reader).unwrap());
        let (all, _, reader) = read_all(&spool);
        assert_eq!(all.len(), 8);
        assert!(spool.clear_if_read(&reader).unwrap());
        assert_eq!(spool.backlog(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        // Appends after a clear start a fresh file.
        spool.append(&records(2)).unwrap();
        assert_eq!(read_all(&spool).0.len(), 2);
    }

    #[test]
    fn damaged_lines_are_quarantined_and_a_cut_line_does_not_swallow_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr-spool.jsonl");
        let good = records(2);
        let mut text = String::new();
        text.push_str(&serde_json::to_string(&good[0]).unwrap());
        text.push_str("\n\nnot json at all\n");
        // A crash cut the last record short.
        let cut = serde_json::to_string(&good[1]).unwrap();
        text.push_str(&cut[..cut.len() / 2]);
        std::fs::write(&path, &text).unwrap();

        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(spool.backlog(), 3);
        let after = records(1);
        spool.append(&after).unwrap();
        let (all, bad, reader) = read_all(&spool);
        assert_eq!(all, vec![good[0].clone(), after[0].clone()]);
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0], b"not json at all");
        assert_eq!(bad[1], &cut.as_bytes()[..cut.len() / 2]);
        assert_eq!(reader.consumed(), spool.backlog());
        spool.quarantine(&bad).unwrap();
        let quarantined = std::fs::read_to_string(spool.bad_path()).unwrap();
        assert_eq!(quarantined.lines().count(), 2);
        assert!(spool.clear_if_read(&reader).unwrap());
    }

    #[test]
    fn oversized_lines_are_bad_not_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr-spool.jsonl");
        let huge = "x".repeat(MAX_LINE as usize + 10);
        let good = records(1);
        std::fs::write(
            &path,
            format!("{huge}\n{}\n", serde_json::to_string(&good[0]).unwrap()),
        )
        .unwrap();
        let spool = Spool::open(&path).unwrap();
        let (all, bad, reader) = read_all(&spool);
        assert_eq!(all, good);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].len(), MAX_LINE as usize);
        assert_eq!(reader.offset, std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn unwritable_spool_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "x").unwrap();
        // A directory below a regular file cannot be created.
        assert!(matches!(
            Spool::open(&file.join("spool.jsonl")),
            Err(CdrError::Spool { .. })
        ));
    }
}
