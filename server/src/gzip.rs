//! Gzip request bodies and answers, with one reused (de)compressor per
//! core.
//!
//! flate2's `GzEncoder` and `GzDecoder::new` build their (de)compressor
//! per stream, hundreds of KB allocated and zeroed per answer
//! (`benches/RESULTS.md`, "Gzip, both ways"). Here each core keeps one of
//! each and resets it, on flate2's zlib-rs backend, whose reset is the
//! cheaper. Decoding stays flate2's own (`GzDecoder::reset`);
//! encoding wraps flate2's raw deflate in the gzip member's fixed 10-byte
//! header and its CRC-32 and length trailer (RFC 1952), because flate2's
//! gzip writer cannot be reset.

use std::io::{Cursor, Read as _};

use flate2::bufread::GzDecoder;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// A gzip member's header: magic, deflate, no flags, no time, no extra
/// flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Why a gzip body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// Not a valid gzip member.
    Invalid,
    /// More than the limit once inflated.
    TooLarge,
    /// Bytes after the end of the member.
    Trailing,
}

/// A core's gzip decoder, reset for each body, and the body it inflated.
pub struct Inflater {
    decoder: GzDecoder<Cursor<Vec<u8>>>,
    out: Vec<u8>,
}

impl Default for Inflater {
    fn default() -> Self {
        Self {
            decoder: GzDecoder::new(Cursor::new(Vec::new())),
            out: Vec::new(),
        }
    }
}

impl Inflater {
    /// Inflates the one gzip member `body`, at most `limit` bytes of it.
    /// The result lives until the next call.
    pub fn inflate(&mut self, body: &[u8], limit: usize) -> Result<&[u8], InflateError> {
        // The body is copied into the decoder's own buffer (kept across
        // requests): the decoder outlives any one request's bytes.
        let mut input = std::mem::take(self.decoder.get_mut().get_mut());
        input.clear();
        input.extend_from_slice(body);
        self.decoder.reset(Cursor::new(input));
        self.out.clear();
        let read = (&mut self.decoder)
            .take(limit as u64 + 1)
            .read_to_end(&mut self.out)
            .map_err(|_| InflateError::Invalid)?;
        if read > limit {
            return Err(InflateError::TooLarge);
        }
        let rest = self.decoder.get_ref();
        if rest.position() < rest.get_ref().len() as u64 {
            return Err(InflateError::Trailing);
        }
        Ok(&self.out)
    }
}

/// A core's gzip encoder, reset for each answer, and the answer it wrote.
pub struct Deflater {
    deflate: Compress,
    out: Vec<u8>,
}

impl Default for Deflater {
    fn default() -> Self {
        Self {
            deflate: Compress::new(Compression::fast(), false),
            out: Vec::new(),
        }
    }
}

impl Deflater {
    /// `body` as one gzip member, valid until the next call. `None`:
    /// deflate failed (it does not on a well-formed stream).
    pub fn deflate(&mut self, body: &[u8]) -> Option<&[u8]> {
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(&HEADER);
        self.deflate.reset();
        loop {
            // Deflate writes only into spare capacity.
            out.reserve(body.len() / 2 + 64);
            let consumed = self.deflate.total_in() as usize;
            match self
                .deflate
                .compress_vec(&body[consumed..], out, FlushCompress::Finish)
            {
                Ok(Status::StreamEnd) => break,
                Ok(Status::Ok | Status::BufError) => {}
                Err(_) => return None,
            }
        }
        let mut crc = Crc::new();
        crc.update(body);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE is the length modulo 2^32.
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_through_flate2_and_state_is_reused() {
        let mut deflater = Deflater::default();
        let mut inflater = Inflater::default();
        // An empty body, a small one and one larger than a first reserve.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for body in [&b""[..], b"{\"id\":\"1\",\"seatbid\":[]}", &big] {
            let packed = deflater.deflate(body).expect("deflated").to_vec();
            // flate2's own reader agrees.
            let mut theirs = Vec::new();
            GzDecoder::new(&packed[..])
                .read_to_end(&mut theirs)
                .unwrap();
            assert_eq!(theirs, body);
            assert_eq!(inflater.inflate(&packed, body.len()), Ok(body));
        }
        let small = b"{\"id\":\"1\"}";
        let packed = deflater.deflate(small).expect("deflated").to_vec();
        assert_eq!(
            inflater.inflate(&packed, small.len() - 1),
            Err(InflateError::TooLarge)
        );
        let mut trailing = packed.clone();
        trailing.push(b'x');
        assert_eq!(
            inflater.inflate(&trailing, 1 << 20),
            Err(InflateError::Trailing)
        );
        assert_eq!(
            inflater.inflate(b"not gzip", 1 << 20),
            Err(InflateError::Invalid)
        );
        // A refused body leaves nothing behind for the next.
        assert_eq!(inflater.inflate(&packed, 1 << 20), Ok(&small[..]));
    }
}
