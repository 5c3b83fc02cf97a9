//! Compressed request bodies, decoded so they can be inspected: `gzip` and `deflate` (zlib, or
//! raw deflate as some clients send it), with the decoded size capped so that a small body
//! cannot expand past the inspection limit (a "zip bomb" stops at the cap).

use std::io::Read;

/// The request content codings the filter can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
}

impl Coding {
    /// The coding a `content-encoding` value names, if the filter can decode it (one coding
    /// only: a chain such as `gzip, gzip` is not decoded).
    pub fn from_header(value: &str) -> Option<Coding> {
        match value.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            _ => None,
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("decoded body exceeds the {limit} byte inspection limit")]
    TooLarge { limit: usize },
    #[error("body is not valid {0:?} data")]
    Corrupt(Coding),
}

/// `body` decoded, at most `limit` bytes of it.
pub fn decode(body: &[u8], coding: Coding, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let attempt = |reader: &mut dyn Read| -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|_| DecodeError::Corrupt(coding))?;
        if out.len() > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        Ok(out)
    };
    match coding {
        Coding::Gzip => attempt(&mut flate2::read::MultiGzDecoder::new(body)),
        // HTTP's `deflate` is zlib-wrapped; raw deflate is what some clients send instead.
        Coding::Deflate => attempt(&mut flate2::read::ZlibDecoder::new(body))
            .or_else(|_| attempt(&mut flate2::read::DeflateDecoder::new(body))),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_gzip_and_both_deflates_up_to_the_limit() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#;
        assert_eq!(decode(&gzip(body), Coding::Gzip, 1024).unwrap(), body);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(body).unwrap();
        assert_eq!(
            decode(&z.finish().unwrap(), Coding::Deflate, 1024).unwrap(),
            body
        );
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(body).unwrap();
        assert_eq!(
            decode(&raw.finish().unwrap(), Coding::Deflate, 1024).unwrap(),
            body
        );
        // 10 MB of zeros compress to about 10 KB: decoding stops at the cap.
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 20_000);
        assert_eq!(
            decode(&bomb, Coding::Gzip, 1 << 20),
            Err(DecodeError::TooLarge { limit: 1 << 20 })
        );
        assert_eq!(
            decode(b"not gzip at all", Coding::Gzip, 1024),
            Err(DecodeError::Corrupt(Coding::Gzip))
        );
        let cut = gzip(body);
        assert!(decode(&cut[..cut.len() / 2], Coding::Gzip, 1024).is_err());
    }

    #[test]
    fn only_single_known_codings_are_decoded() {
        assert_eq!(Coding::from_header(" GZIP "), Some(Coding::Gzip));
        assert_eq!(Coding::from_header("x-gzip"), Some(Coding::Gzip));
        assert_eq!(Coding::from_header("deflate"), Some(Coding::Deflate));
        for other in ["br", "zstd", "gzip, gzip", "compress", ""] {
            assert_eq!(Coding::from_header(other), None, "{other}");
        }
    }
}
