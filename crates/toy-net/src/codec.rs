//! The frame codec: a 4-byte big-endian length, then that many bytes.
//!
//! ```text
//!  0               4                              4 + len
//!  +---------------+------------------------------+
//!  | len (u32, BE) | payload (len bytes)          |
//!  +---------------+------------------------------+
//! ```
//!
//! The codec does no I/O: [`FrameCodec::decode`] takes whatever bytes have
//! arrived and returns a frame once a whole one is buffered. It checks the
//! announced length against the maximum *before* reserving any memory, so a
//! peer cannot make us allocate by sending a large prefix.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::Error;

/// Size of the length prefix in bytes.
pub const LEN_PREFIX: usize = 4;

/// Default maximum frame length: 16 MiB.
///
/// Large enough for a block of thousands of transactions or a batch of blocks
/// during sync; small enough that one malicious prefix cannot make a node
/// reserve more than a little memory per connection.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Length-prefixed frame codec with a maximum frame length.
///
/// Usable on its own with `tokio_util::codec::Framed`, and used by the TCP
/// transport.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame_len: usize,
}

impl FrameCodec {
    /// A codec refusing frames longer than `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        Self { max_frame_len }
    }

    /// Changes the maximum (a connection's limit is raised once its peer is
    /// known: see [`crate::Transport::promote`]).
    pub fn set_max_frame_len(&mut self, max_frame_len: usize) {
        self.max_frame_len = max_frame_len;
    }

    /// The maximum frame length this codec accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Appends one frame (prefix and payload) to `dst`.
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`] when the payload is over the maximum; `dst` is
    /// then unchanged.
    pub fn encode_into(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        let len = payload.len();
        if len > self.max_frame_len || u32::try_from(len).is_err() {
            return Err(Error::FrameTooLarge { len: len as u64, max: self.max_frame_len });
        }
        dst.reserve(LEN_PREFIX + len);
        dst.put_u32(len as u32);
        dst.put_slice(payload);
        Ok(())
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        if src.len() < LEN_PREFIX {
            return Ok(None);
        }
        let mut prefix = [0u8; LEN_PREFIX];
        prefix.copy_from_slice(&src[..LEN_PREFIX]);
        let len = u32::from_be_bytes(prefix) as usize;
        if len > self.max_frame_len {
            return Err(Error::FrameTooLarge { len: len as u64, max: self.max_frame_len });
        }
        let total = LEN_PREFIX + len;
        if src.len() < total {
            // Nothing is reserved for the declared length: the buffer grows
            // with the bytes that actually arrive (the reader adds room a
            // read at a time), so a prefix alone costs nothing.
            return Ok(None);
        }
        src.advance(LEN_PREFIX);
        Ok(Some(src.split_to(len).freeze()))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), Error> {
        self.encode_into(&item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_all(frames: &[Vec<u8>]) -> BytesMut {
        let codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        for f in frames {
            codec.encode_into(f, &mut buf).expect("frame fits");
        }
        buf
    }

    /// Feeds `wire` to a decoder in chunks of the given sizes, collecting frames.
    fn decode_in_chunks(wire: &[u8], chunks: &[usize]) -> Result<Vec<Bytes>, Error> {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < wire.len() {
            let step = chunks.get(i % chunks.len().max(1)).copied().unwrap_or(1).max(1);
            let end = (pos + step).min(wire.len());
            buf.extend_from_slice(&wire[pos..end]);
            pos = end;
            i += 1;
            while let Some(frame) = codec.decode(&mut buf)? {
                out.push(frame);
            }
        }
        assert!(buf.is_empty(), "bytes left over after the last frame");
        Ok(out)
    }

    #[test]
    fn rejects_frame_over_max_len_before_allocating() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let cap_before = buf.capacity();
        let err = codec.decode(&mut buf).expect_err("oversize prefix");
        assert!(matches!(err, Error::FrameTooLarge { len: 0xffff_ffff, max: 1024 }));
        assert_eq!(buf.capacity(), cap_before, "no memory reserved for the frame");
    }

    #[test]
    fn accepts_frame_of_exactly_max_len() {
        let mut codec = FrameCodec::new(8);
        let mut buf = BytesMut::new();
        codec.encode_into(&[7; 8], &mut buf).expect("fits");
        assert_eq!(codec.decode(&mut buf).expect("ok").as_deref(), Some(&[7u8; 8][..]));
        assert!(codec.encode_into(&[7; 9], &mut buf).is_err());
        assert!(buf.is_empty());
    }

    #[test]
    fn empty_frame_round_trips() {
        let wire = encode_all(&[vec![], vec![1], vec![]]);
        assert_eq!(&wire[..], &[0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]);
        let frames = decode_in_chunks(&wire, &[1]).expect("valid");
        assert_eq!(frames.len(), 3);
        assert!(frames[0].is_empty() && frames[2].is_empty());
    }

    proptest! {
        #[test]
        fn frames_round_trip_in_any_fragmentation(
            frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
            chunks in prop::collection::vec(1usize..64, 1..8),
        ) {
            let wire = encode_all(&frames);
            let decoded = decode_in_chunks(&wire, &chunks).expect("valid stream");
            let decoded: Vec<Vec<u8>> = decoded.into_iter().map(|b| b.to_vec()).collect();
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut codec = FrameCodec::new(256);
            let mut buf = BytesMut::from(&bytes[..]);
            // Either frames, a clean error, or a wait for more bytes.
            while let Ok(Some(frame)) = codec.decode(&mut buf) {
                prop_assert!(frame.len() <= 256);
            }
        }
    }
}
