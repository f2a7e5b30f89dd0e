//! The workshop's chat message: gossip kind [`KIND`] (`chat`, on the wire
//! `gossip:chat`) with payload `host:port` 0x00 `text`, the sender's address
//! then its line. Used by the `gossip_chat` example, so toy and workshop
//! chat nodes talk through each other.

/// Gossip kind of chat messages.
pub const KIND: &str = "chat";

/// Longest text a chat message may carry: 4 KiB.
pub const MAX_TEXT: usize = 4 * 1024;

/// One chat line and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// The sender's `host:port`.
    pub from: String,
    /// The line (UTF-8, invalid bytes replaced).
    pub text: String,
}

impl ChatMessage {
    /// `from` 0x00 `text`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.from.len() + 1 + self.text.len());
        out.extend_from_slice(self.from.as_bytes());
        out.push(0);
        out.extend_from_slice(self.text.as_bytes());
        out
    }

    /// Decodes `host:port` 0x00 `text`; `None` without the separator, with
    /// a sender that is not `host:port`, or with a text over [`MAX_TEXT`].
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let at = payload.iter().position(|b| *b == 0)?;
        let from = std::str::from_utf8(&payload[..at]).ok()?;
        let (host, port) = from.rsplit_once(':')?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return None;
        }
        let text = &payload[at + 1..];
        if text.len() > MAX_TEXT {
            return None;
        }
        Some(Self { from: from.to_owned(), text: String::from_utf8_lossy(text).into_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_a_chat_line() {
        let m = ChatMessage { from: "127.0.0.1:7001".into(), text: "hello: ünïcode".into() };
        assert_eq!(ChatMessage::decode(&m.encode()), Some(m));
        assert_eq!(
            ChatMessage::decode(b"10.0.0.1:5\0a\0b"),
            Some(ChatMessage { from: "10.0.0.1:5".into(), text: "a\0b".into() }),
            "only the first 0x00 separates"
        );
        assert_eq!(ChatMessage::decode(b"no separator"), None);
        assert_eq!(ChatMessage::decode(b"nohost\0x"), None);
        assert_eq!(ChatMessage::decode(b"host:notaport\0x"), None);
        assert_eq!(ChatMessage::decode(&[b"h:1\0".as_slice(), &[b'x'; MAX_TEXT + 1]].concat()), None);
    }
}
