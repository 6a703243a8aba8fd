//! Reading the text files people write for trailsql (SQL files, Sigma rules): UTF-8, after a byte-order mark if it
//! has one (editors on Windows write one), or UTF-16 after its mark (PowerShell's `>` writes that).

use std::path::Path;

use crate::error::{Error, Result};

/// The text of a file; a usage error naming it where it is not text.
pub fn read(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(bytes).map_err(|why| Error::Usage(format!("{}: {why}", path.display())))
}

/// The text of a file's bytes, or why they are not text.
pub fn decode(bytes: Vec<u8>) -> std::result::Result<String, String> {
    let utf16 = |b: &[u8], unit: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = b.chunks_exact(2).map(|c| unit([c[0], c[1]])).collect();
        match String::from_utf16(&units) {
            Ok(text) if b.len().is_multiple_of(2) => Ok(text),
            _ => Err("not UTF-16 text, though it starts with a UTF-16 byte-order mark".to_string()),
        }
    };
    match bytes.as_slice() {
        [0xEF, 0xBB, 0xBF, rest @ ..] => {
            std::str::from_utf8(rest).map(String::from).map_err(|e| format!("not UTF-8 text ({e})"))
        }
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text ({})", e.utf8_error())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_with_or_without_a_mark_and_utf16_after_one() {
        assert_eq!(decode(b"SELECT 1".to_vec()).unwrap(), "SELECT 1");
        assert_eq!(decode(b"\xEF\xBB\xBFSELECT 1".to_vec()).unwrap(), "SELECT 1");
        let le: Vec<u8> = [0xFF, 0xFE].into_iter().chain("é 1".encode_utf16().flat_map(u16::to_le_bytes)).collect();
        assert_eq!(decode(le).unwrap(), "é 1");
        let be: Vec<u8> = [0xFE, 0xFF].into_iter().chain("é 1".encode_utf16().flat_map(u16::to_be_bytes)).collect();
        assert_eq!(decode(be).unwrap(), "é 1");
        assert!(decode(b"a\xC3\x28".to_vec()).unwrap_err().starts_with("not UTF-8 text (invalid utf-8 sequence"));
        assert!(decode(vec![0xFF, 0xFE, 0x00, 0xD8]).unwrap_err().starts_with("not UTF-16 text"));
        assert!(decode(vec![0xFF, 0xFE, b'a', 0, b'b']).unwrap_err().starts_with("not UTF-16 text"), "a byte short");
    }
}
