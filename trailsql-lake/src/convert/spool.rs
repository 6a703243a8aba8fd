//! The pieces of a very large source file, held on disk until the file is read to its end: only then may they
//! enter the lake, so that a file that fails part-way (a truncated gzip) leaves nothing of itself behind, while
//! memory stays bounded by the piece size, not the file size.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom};

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use super::record::PartBatch;
use crate::error::{Error, Result};
use crate::index::EventId;
use crate::layout::PartitionKey;
use crate::schema;

/// Rows written to an anonymous temporary file as an Arrow IPC stream; their partitions and IDs, small, in memory.
pub struct Spool {
    writer: StreamWriter<BufWriter<File>>,
    parts: Vec<(PartitionKey, Vec<Option<EventId>>)>,
}

fn tmp_err(e: std::io::Error) -> Error {
    Error::io(std::env::temp_dir(), e)
}

impl Spool {
    pub fn new() -> Result<Spool> {
        let file = tempfile::tempfile().map_err(tmp_err)?;
        let writer = StreamWriter::try_new(BufWriter::new(file), &schema::file_schema())?;
        Ok(Spool { writer, parts: Vec::new() })
    }

    pub fn push(&mut self, parts: Vec<PartBatch>) -> Result<()> {
        for p in parts {
            self.writer.write(&p.batch)?;
            self.parts.push((p.key, p.ids));
        }
        Ok(())
    }

    /// The spooled pieces, in the order they came, read back one batch at a time.
    pub fn replay(mut self) -> Result<impl Iterator<Item = Result<PartBatch>>> {
        self.writer.finish()?;
        let mut file = self.writer.into_inner()?.into_inner().map_err(|e| tmp_err(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(tmp_err)?;
        let reader = StreamReader::try_new(BufReader::new(file), None)?;
        Ok(reader.zip(self.parts).map(|(batch, (key, ids))| Ok(PartBatch { key, batch: batch?, ids })))
    }
}
