//! base64url without padding (RFC 4648 §5), as JOSE writes every binary value.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Encodes `data` as base64url without padding.
pub fn encode(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url without padding; `None` if `s` is not that.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// base64url of data that arrives in pieces: every piece's text is appended as
/// soon as it is whole (three bytes make four characters); [`Encoder::finish`]
/// writes the last one or two bytes. The result is [`encode`] of all pieces.
#[derive(Debug, Default)]
pub struct Encoder {
    /// Bytes that did not yet make a group of three.
    pending: [u8; 2],
    pending_len: usize,
}

impl Encoder {
    /// Encodes the next piece, appending to `out`.
    pub fn update(&mut self, mut data: &[u8], out: &mut String) {
        if self.pending_len > 0 {
            let take = (3 - self.pending_len).min(data.len());
            let mut group = [0u8; 3];
            group[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
            group[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending_len + take < 3 {
                self.pending[..self.pending_len + take]
                    .copy_from_slice(&group[..self.pending_len + take]);
                self.pending_len += take;
                return;
            }
            URL_SAFE_NO_PAD.encode_string(group, out);
            self.pending_len = 0;
        }
        let whole = data.len() / 3 * 3;
        URL_SAFE_NO_PAD.encode_string(&data[..whole], out);
        let rest = &data[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// Writes what is left (no padding).
    pub fn finish(self, out: &mut String) {
        URL_SAFE_NO_PAD.encode_string(&self.pending[..self.pending_len], out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_any_size_encode_as_the_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for len in [0usize, 1, 2, 3, 4, 5, 999, 1000] {
            for piece in [1usize, 2, 3, 4, 5, 64, 1000] {
                let mut enc = Encoder::default();
                let mut out = String::new();
                for chunk in data[..len].chunks(piece) {
                    enc.update(chunk, &mut out);
                }
                enc.update(&[], &mut out);
                enc.finish(&mut out);
                assert_eq!(
                    out,
                    encode(&data[..len]),
                    "{len} bytes in pieces of {piece}"
                );
            }
        }
    }
}
