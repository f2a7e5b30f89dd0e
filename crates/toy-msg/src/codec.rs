//! The message codec: one message per frame, no I/O.
//!
//! ```text
//!  0      1              5                    5+k  5+k+1
//!  +------+--------------+--------------------+----+----------------+
//!  | type | id (u32, BE) | kind (UTF-8, k B)  | 00 | payload ...    |
//!  +------+--------------+--------------------+----+----------------+
//!  type: 0x00 one-way, 0x01 request, 0x02 response
//!  a response carries its request's id and an empty kind
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes before the kind: the type byte and the 4-byte id.
pub const HEADER_LEN: usize = 5;

/// Kinds up to this many bytes get their head built on the stack by
/// [`with_head`]; longer ones in a `Vec`.
const STACK_KIND: usize = 58;

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// `0x00`: no response expected.
    OneWay,
    /// `0x01`: the receiver's handler may answer with a response.
    Request,
    /// `0x02`: the answer to the request with the same id.
    Response,
}

impl MessageType {
    /// The type byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::OneWay => 0x00,
            Self::Request => 0x01,
            Self::Response => 0x02,
        }
    }

    /// Parses a type byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x00 => Some(Self::OneWay),
            0x01 => Some(Self::Request),
            0x02 => Some(Self::Response),
            _ => None,
        }
    }
}

/// A decoded message. The payload shares the frame's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// One-way, request or response.
    pub ty: MessageType,
    /// Matches a response to its request.
    pub id: u32,
    /// What the message is about, e.g. `p2p:hello`; empty in responses.
    pub kind: String,
    /// The rest of the frame.
    pub payload: Bytes,
}

/// Why a frame is not a valid message. Every variant is the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the type, the id and the kind terminator.
    #[error("message of {len} bytes is shorter than its header")]
    TooShort {
        /// The frame's length.
        len: usize,
    },
    /// The type byte is not 0x00, 0x01 or 0x02.
    #[error("unknown message type byte {0:#04x}")]
    UnknownType(u8),
    /// No 0x00 ends the kind.
    #[error("message kind is not terminated by 0x00")]
    UnterminatedKind,
    /// The kind is not valid UTF-8.
    #[error("message kind is not valid utf-8")]
    KindNotUtf8,
}

/// A kind that cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid message kind {kind:?}: contains a 0x00 byte")]
pub struct InvalidKind {
    /// The offending kind.
    pub kind: String,
}

/// Checks that `kind` can be encoded (it must not contain 0x00).
pub fn check_kind(kind: &str) -> Result<(), InvalidKind> {
    if kind.as_bytes().contains(&0) {
        return Err(InvalidKind { kind: kind.to_owned() });
    }
    Ok(())
}

/// A message's header, borrowed from its frame: what the dispatcher reads
/// before it knows whether anyone handles the kind, so it costs no
/// allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// One-way, request or response.
    pub ty: MessageType,
    /// Matches a response to its request.
    pub id: u32,
    /// The kind, borrowed from the frame.
    pub kind: &'a str,
    /// Where the payload starts in the frame.
    pub payload_at: usize,
}

impl<'a> Header<'a> {
    /// Reads the header at the start of `frame`. Never panics.
    ///
    /// # Errors
    /// A [`DecodeError`] saying what is malformed.
    pub fn decode(frame: &'a [u8]) -> Result<Self, DecodeError> {
        if frame.len() < HEADER_LEN + 1 {
            return Err(DecodeError::TooShort { len: frame.len() });
        }
        let ty = MessageType::from_byte(frame[0]).ok_or(DecodeError::UnknownType(frame[0]))?;
        let id = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
        let rest = &frame[HEADER_LEN..];
        let nul = rest.iter().position(|&b| b == 0).ok_or(DecodeError::UnterminatedKind)?;
        let kind = std::str::from_utf8(&rest[..nul]).map_err(|_| DecodeError::KindNotUtf8)?;
        Ok(Self { ty, id, kind, payload_at: HEADER_LEN + nul + 1 })
    }
}

/// Calls `f` with the encoded head of a message (type, id, kind and its
/// terminator: everything before the payload), built on the stack for
/// kinds up to 58 bytes. The messaging layer hands it to
/// [`toy_net::Transport::send_parts`] with the payload, so sending builds
/// no frame of its own.
///
/// # Errors
/// [`InvalidKind`] when the kind contains 0x00.
pub fn with_head<R>(ty: MessageType, id: u32, kind: &str, f: impl FnOnce(&[u8]) -> R) -> Result<R, InvalidKind> {
    check_kind(kind)?;
    let len = HEADER_LEN + kind.len() + 1;
    let fill = |head: &mut [u8]| {
        head[0] = ty.to_byte();
        head[1..HEADER_LEN].copy_from_slice(&id.to_be_bytes());
        head[HEADER_LEN..len - 1].copy_from_slice(kind.as_bytes());
        head[len - 1] = 0;
    };
    if kind.len() <= STACK_KIND {
        let mut head = [0u8; HEADER_LEN + STACK_KIND + 1];
        fill(&mut head[..len]);
        Ok(f(&head[..len]))
    } else {
        let mut head = vec![0u8; len];
        fill(&mut head);
        Ok(f(&head))
    }
}

/// Encodes a message into a fresh frame.
///
/// # Errors
/// [`InvalidKind`] when the kind contains 0x00.
pub fn encode(ty: MessageType, id: u32, kind: &str, payload: &[u8]) -> Result<Bytes, InvalidKind> {
    check_kind(kind)?;
    let mut buf = BytesMut::with_capacity(HEADER_LEN + kind.len() + 1 + payload.len());
    buf.put_u8(ty.to_byte());
    buf.put_u32(id);
    buf.put_slice(kind.as_bytes());
    buf.put_u8(0);
    buf.put_slice(payload);
    Ok(buf.freeze())
}

impl Message {
    /// Encodes this message into a frame.
    ///
    /// # Errors
    /// [`InvalidKind`] when the kind contains 0x00.
    pub fn encode(&self) -> Result<Bytes, InvalidKind> {
        encode(self.ty, self.id, &self.kind, &self.payload)
    }

    /// Decodes one frame. Never panics; the payload is a slice of `frame`.
    ///
    /// # Errors
    /// A [`DecodeError`] saying what is malformed.
    pub fn decode(mut frame: Bytes) -> Result<Self, DecodeError> {
        let header = Header::decode(&frame)?;
        let (ty, id, kind, at) = (header.ty, header.id, header.kind.to_owned(), header.payload_at);
        frame.advance(at);
        Ok(Self { ty, id, kind, payload: frame })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_the_workshop_layout_byte_for_byte() {
        let frame = encode(MessageType::Request, 0x0102_0304, "p2p:hello", b"127.0.0.1:15151").expect("valid");
        let mut want = vec![0x01, 0x01, 0x02, 0x03, 0x04];
        want.extend_from_slice(b"p2p:hello\x00127.0.0.1:15151");
        assert_eq!(&frame[..], &want[..]);
        let resp = encode(MessageType::Response, 7, "", &[1]).expect("valid");
        assert_eq!(&resp[..], &[0x02, 0, 0, 0, 7, 0, 1]);
    }

    #[test]
    fn rejects_each_malformation() {
        assert_eq!(Message::decode(Bytes::from_static(b"")), Err(DecodeError::TooShort { len: 0 }));
        assert_eq!(Message::decode(Bytes::from_static(&[0, 0, 0, 0, 1])), Err(DecodeError::TooShort { len: 5 }));
        assert_eq!(Message::decode(Bytes::from_static(&[3, 0, 0, 0, 1, 0])), Err(DecodeError::UnknownType(3)));
        assert_eq!(Message::decode(Bytes::from_static(&[0, 0, 0, 0, 1, b'a'])), Err(DecodeError::UnterminatedKind));
        assert_eq!(Message::decode(Bytes::from_static(&[0, 0, 0, 0, 1, 0xff, 0])), Err(DecodeError::KindNotUtf8));
        assert!(encode(MessageType::OneWay, 1, "a\0b", b"").is_err());
    }

    #[test]
    fn payload_may_contain_zero_bytes() {
        let frame = encode(MessageType::OneWay, 9, "k", &[0, 0, 1, 0]).expect("valid");
        let msg = Message::decode(frame).expect("decodes");
        assert_eq!((msg.kind.as_str(), &msg.payload[..]), ("k", &[0u8, 0, 1, 0][..]));
    }

    fn any_type() -> impl Strategy<Value = MessageType> {
        prop_oneof![Just(MessageType::OneWay), Just(MessageType::Request), Just(MessageType::Response)]
    }

    proptest! {
        #[test]
        fn round_trips(ty in any_type(), id in any::<u32>(), kind in "[^\u{0}]{0,40}", payload in prop::collection::vec(any::<u8>(), 0..600)) {
            let msg = Message { ty, id, kind, payload: Bytes::from(payload) };
            let frame = msg.encode().expect("kind has no NUL");
            prop_assert_eq!(Message::decode(frame).expect("decodes"), msg);
        }

        #[test]
        fn the_head_and_payload_are_the_encoded_frame(ty in any_type(), id in any::<u32>(), kind in "[^\u{0}]{0,80}", payload in prop::collection::vec(any::<u8>(), 0..100)) {
            let whole = encode(ty, id, &kind, &payload).expect("kind has no NUL");
            let parts = with_head(ty, id, &kind, |head| [head, &payload[..]].concat()).expect("kind has no NUL");
            prop_assert_eq!(&whole[..], &parts[..]);
            let header = Header::decode(&whole).expect("decodes");
            prop_assert_eq!((header.ty, header.id, header.kind), (ty, id, kind.as_str()));
            prop_assert_eq!(&whole[header.payload_at..], &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(msg) = Message::decode(Bytes::from(bytes.clone())) {
                // Whatever decodes re-encodes to the same bytes.
                prop_assert_eq!(&msg.encode().expect("decoded kind has no NUL")[..], &bytes[..]);
            }
        }
    }
}
