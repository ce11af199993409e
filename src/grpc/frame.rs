//! gRPC message framing: a 5-byte prefix (compressed flag, big-endian length) and the message.

use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};

use crate::scenario::Compression;

/// Frames one encoded message for the wire, compressing it when asked.
pub fn frame(message: &[u8], compression: Option<Compression>) -> std::io::Result<Bytes> {
    let (flag, body) = match compression {
        None => (0u8, message.to_vec()),
        Some(Compression::Gzip) => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(message)?;
            (1u8, enc.finish()?)
        }
    };
    let len = u32::try_from(body.len())
        .map_err(|_| std::io::Error::other("message larger than 4 GiB cannot be framed"))?;
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(flag);
    out.put_u32(len);
    out.put_slice(&body);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_carries_flag_and_length() {
        let f = frame(b"abc", None).unwrap();
        assert_eq!(&f[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        let z = frame(&[7u8; 100], Some(Compression::Gzip)).unwrap();
        assert_eq!(z[0], 1);
        let len = u32::from_be_bytes([z[1], z[2], z[3], z[4]]) as usize;
        assert_eq!(len, z.len() - 5);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&z[5..]), &mut out).unwrap();
        assert_eq!(out, vec![7u8; 100]);
    }
}
