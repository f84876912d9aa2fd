//! AES-256-GCM over data that arrives in pieces (NIST SP 800-38D), for parts
//! too large to hold whole: the streaming intake encrypts an attachment as it
//! is uploaded, a receiver decrypts it as it reads.
//!
//! aws-lc-rs offers GCM only over a whole buffer, so it is assembled here from
//! its two halves, as the standard defines it: the keystream is AES-256 in
//! counter mode from aws-lc-rs, starting at `J0 + 1` with `J0 = IV ‖ 0³¹1`;
//! the tag is `E(K, J0) ⊕ GHASH_H(A, C)` with `H = E(K, 0¹²⁸)`, GHASH from
//! RustCrypto's `ghash` (constant time). Counter mode increments all 128 bits
//! where GCM increments the low 32; the two agree while a message stays below
//! 2³² − 2 blocks, so longer input is refused. The tests compare every result
//! with aws-lc-rs's own one-shot AES-GCM.

use aws_lc_rs::cipher::{EncryptionContext, StreamingEncryptingKey, UnboundCipherKey, AES_256};
use aws_lc_rs::iv::FixedLength;
use ghash::universal_hash::{KeyInit, UniversalHash};
use ghash::GHash;

use super::JoseError;

/// GCM's limit for one message: 2³² − 2 blocks of 16 bytes.
pub const GCM_MAX_BYTES: u64 = ((1u64 << 32) - 2) * 16;

fn crypto<T, E>(r: Result<T, E>) -> Result<T, JoseError> {
    r.map_err(|_| JoseError::Crypto)
}

/// AES-256-CTR from `counter`, over `data` (the keystream XORed in).
fn ctr(key: &[u8; 32], counter: [u8; 16]) -> Result<StreamingEncryptingKey, JoseError> {
    let key = crypto(UnboundCipherKey::new(&AES_256, key))?;
    crypto(StreamingEncryptingKey::less_safe_ctr(
        key,
        EncryptionContext::Iv128(FixedLength::from(counter)),
    ))
}

/// `E(K, block)`.
fn encrypt_block(key: &[u8; 32], block: [u8; 16]) -> Result<[u8; 16], JoseError> {
    let mut k = ctr(key, block)?;
    let mut out = [0u8; 32];
    let n = crypto(k.update(&[0u8; 16], &mut out))?.written().len();
    if n != 16 {
        return Err(JoseError::Crypto);
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&out[..16]);
    Ok(b)
}

/// What sealing and opening share: the keystream, GHASH over the ciphertext,
/// and the lengths.
struct Gcm {
    keystream: StreamingEncryptingKey,
    ghash: GHash,
    /// Ciphertext bytes not yet a whole block for GHASH.
    partial: [u8; 16],
    partial_len: usize,
    aad_len: u64,
    len: u64,
    /// `E(K, J0)`.
    mask: [u8; 16],
}

impl Gcm {
    fn new(key: &[u8; 32], iv: &[u8; 12], aad: &[u8]) -> Result<Self, JoseError> {
        let h = encrypt_block(key, [0u8; 16])?;
        let mut j0 = [0u8; 16];
        j0[..12].copy_from_slice(iv);
        j0[15] = 1;
        let mask = encrypt_block(key, j0)?;
        let mut first = j0;
        first[15] = 2;
        let mut ghash = GHash::new(&h.into());
        ghash.update_padded(aad);
        Ok(Gcm {
            keystream: ctr(key, first)?,
            ghash,
            partial: [0u8; 16],
            partial_len: 0,
            aad_len: aad.len() as u64,
            len: 0,
            mask,
        })
    }

    /// XORs the keystream into `input`, appending the result to `out`.
    fn xor(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), JoseError> {
        self.len += input.len() as u64;
        if self.len > GCM_MAX_BYTES {
            return Err(JoseError::Header(
                "a part larger than GCM allows (64 GiB)".into(),
            ));
        }
        let start = out.len();
        out.resize(start + input.len() + 16, 0);
        let n = crypto(self.keystream.update(input, &mut out[start..]))?
            .written()
            .len();
        if n != input.len() {
            return Err(JoseError::Crypto);
        }
        out.truncate(start + n);
        Ok(())
    }

    /// Feeds ciphertext to GHASH, whole blocks at once.
    fn hash(&mut self, mut ct: &[u8]) {
        if self.partial_len > 0 {
            let take = (16 - self.partial_len).min(ct.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&ct[..take]);
            self.partial_len += take;
            ct = &ct[take..];
            if self.partial_len < 16 {
                return;
            }
            let block = self.partial;
            self.ghash.update_padded(&block);
            self.partial_len = 0;
        }
        let whole = ct.len() / 16 * 16;
        self.ghash.update_padded(&ct[..whole]);
        let rest = &ct[whole..];
        self.partial[..rest.len()].copy_from_slice(rest);
        self.partial_len = rest.len();
    }

    fn tag(mut self) -> [u8; 16] {
        let rest = self.partial;
        self.ghash.update_padded(&rest[..self.partial_len]);
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&(self.aad_len * 8).to_be_bytes());
        lengths[8..].copy_from_slice(&(self.len * 8).to_be_bytes());
        self.ghash.update_padded(&lengths);
        let s = self.ghash.finalize();
        let mut tag = self.mask;
        tag.iter_mut().zip(s.iter()).for_each(|(t, s)| *t ^= s);
        tag
    }
}

/// Encrypts a message piece by piece; [`GcmSeal::finish`] gives the tag.
pub struct GcmSeal(Gcm);

impl GcmSeal {
    /// The IV must never repeat under `key` (a fresh random 96-bit IV per message).
    pub fn new(key: &[u8; 32], iv: &[u8; 12], aad: &[u8]) -> Result<Self, JoseError> {
        Ok(GcmSeal(Gcm::new(key, iv, aad)?))
    }

    /// Encrypts the next piece of plaintext, appending its ciphertext to `out`.
    pub fn update(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), JoseError> {
        let start = out.len();
        self.0.xor(plaintext, out)?;
        self.0.hash(&out[start..]);
        Ok(())
    }

    /// The authentication tag over everything encrypted.
    pub fn finish(self) -> [u8; 16] {
        self.0.tag()
    }
}

/// Decrypts a message piece by piece. The plaintext is not authentic until
/// [`GcmOpen::finish`] accepted the tag: whoever uses it before must be able
/// to throw it away.
pub struct GcmOpen(Gcm);

impl GcmOpen {
    pub fn new(key: &[u8; 32], iv: &[u8; 12], aad: &[u8]) -> Result<Self, JoseError> {
        Ok(GcmOpen(Gcm::new(key, iv, aad)?))
    }

    /// Decrypts the next piece of ciphertext, appending its plaintext to `out`.
    pub fn update(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), JoseError> {
        self.0.hash(ciphertext);
        self.0.xor(ciphertext, out)
    }

    /// Checks the tag (in constant time).
    pub fn finish(self, tag: &[u8]) -> Result<(), JoseError> {
        let want = self.0.tag();
        let same =
            tag.len() == 16 && want.iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same {
            Ok(())
        } else {
            Err(JoseError::Decrypt)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};

    fn one_shot(key: &[u8; 32], iv: &[u8; 12], aad: &[u8], plain: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
        let mut buf = plain.to_vec();
        let tag = k
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*iv), Aad::from(aad), &mut buf)
            .unwrap();
        (buf, tag.as_ref().to_vec())
    }

    #[test]
    fn pieces_of_any_size_give_what_one_shot_gcm_gives_and_open_again() {
        let rng = SystemRandom::new();
        for (len, piece) in [
            (0usize, 1usize),
            (1, 1),
            (15, 4),
            (16, 16),
            (17, 5),
            (1000, 7),
            (100_000, 4096),
            (300_001, 65_537),
        ] {
            let (mut key, mut iv) = ([0u8; 32], [0u8; 12]);
            rng.fill(&mut key).unwrap();
            rng.fill(&mut iv).unwrap();
            let mut plain = vec![0u8; len];
            rng.fill(&mut plain).unwrap();
            let aad = b"eyJlbmMiOiJBMjU2R0NNIn0";
            let (want_ct, want_tag) = one_shot(&key, &iv, aad, &plain);
            let mut seal = GcmSeal::new(&key, &iv, aad).unwrap();
            let mut ct = Vec::new();
            for chunk in plain.chunks(piece) {
                seal.update(chunk, &mut ct).unwrap();
            }
            assert_eq!(ct, want_ct, "ciphertext, {len} bytes in pieces of {piece}");
            let tag = seal.finish();
            assert_eq!(
                tag.to_vec(),
                want_tag,
                "tag, {len} bytes in pieces of {piece}"
            );
            let mut open = GcmOpen::new(&key, &iv, aad).unwrap();
            let mut back = Vec::new();
            for chunk in ct.chunks(piece.max(3) - 2) {
                open.update(chunk, &mut back).unwrap();
            }
            open.finish(&tag).unwrap();
            assert_eq!(back, plain);
        }
    }

    #[test]
    fn a_changed_byte_tag_or_aad_is_refused() {
        let (key, iv) = ([7u8; 32], [9u8; 12]);
        let (ct, tag) = one_shot(&key, &iv, b"aad", b"Antragsdaten, 34 bytes of them...");
        let open = |ct: &[u8], tag: &[u8], aad: &[u8]| {
            let mut o = GcmOpen::new(&key, &iv, aad).unwrap();
            o.update(ct, &mut Vec::new()).unwrap();
            o.finish(tag)
        };
        assert!(open(&ct, &tag, b"aad").is_ok());
        let mut bad = ct.clone();
        bad[20] ^= 1;
        assert!(open(&bad, &tag, b"aad").is_err());
        let mut bad_tag = tag.clone();
        bad_tag[0] ^= 0x80;
        assert!(open(&ct, &bad_tag, b"aad").is_err());
        assert!(open(&ct, &tag[..15], b"aad").is_err());
        assert!(open(&ct, &tag, b"AAD").is_err());
    }
}
