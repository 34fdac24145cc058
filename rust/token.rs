//! The signed-token format: `KIND.KID.B64URL(payload).B64URL(signature)`, Ed25519 over the ASCII text
//! `KIND.KID.B64URL(payload)`. The kind is signed, so a token of one kind never verifies as another.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::ed25519::{Signer, SEED_LENGTH, SIGNATURE_LENGTH};

/// The longest token, in characters, that is made or read.
pub const MAX_TOKEN_LENGTH: usize = 262_144;

/// Why a token was refused; the bindings turn each into its `licensor.errors` class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFault {
    Malformed(&'static str),
    TooLong,
    WrongKind { found: String, expected: String },
    UnknownKey(String),
    BadSignature,
}

impl TokenFault {
    /// The message, identical to the pure-Python twin's.
    pub fn message(&self) -> String {
        match self {
            TokenFault::Malformed(reason) => format!("token is malformed: {reason}"),
            TokenFault::TooLong => {
                format!("token is malformed: longer than {MAX_TOKEN_LENGTH} characters")
            }
            TokenFault::WrongKind { found, expected } => {
                format!("token is of kind {found}, expected {expected}")
            }
            TokenFault::UnknownKey(kid) => format!("unknown key id {kid}"),
            TokenFault::BadSignature => "token signature does not verify".to_string(),
        }
    }
}

pub fn is_valid_kind(kind: &str) -> bool {
    (1..=8).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

pub fn is_valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub const INVALID_KIND: &str = "kind must be 1-8 characters of a-z0-9";
pub const INVALID_KID: &str = "kid must be 1-64 characters of A-Za-z0-9_-";

/// Sign `payload` into a token; `Err` carries the invalid-input message.
pub fn encode(
    kind: &str,
    kid: &str,
    payload: &[u8],
    seed: &[u8; SEED_LENGTH],
) -> Result<String, String> {
    encode_with(kind, kid, payload, &Signer::new(seed))
}

/// [`encode`] with a key expanded beforehand (the same token for the same seed).
pub fn encode_with(
    kind: &str,
    kid: &str,
    payload: &[u8],
    signer: &Signer,
) -> Result<String, String> {
    if !is_valid_kind(kind) {
        return Err(INVALID_KIND.to_string());
    }
    if !is_valid_kid(kid) {
        return Err(INVALID_KID.to_string());
    }
    if kind.len() + kid.len() + (payload.len() * 4).div_ceil(3) + 89 > MAX_TOKEN_LENGTH {
        return Err(format!(
            "token would be longer than {MAX_TOKEN_LENGTH} characters"
        ));
    }
    let mut token = format!("{kind}.{kid}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = signer.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}

/// A token whose form and kind are right; its signature is still to be checked.
#[derive(Debug)]
pub struct ParsedToken<'a> {
    pub kid: &'a str,
    pub signed: &'a [u8],
    pub payload: Vec<u8>,
    pub signature: [u8; SIGNATURE_LENGTH],
}

fn decode_part(text: &str, fault: &'static str) -> Result<Vec<u8>, TokenFault> {
    // The engine refuses padding, foreign characters and non-zero trailing bits: one encoding per value.
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| TokenFault::Malformed(fault))
}

/// Check a token's form and kind, in the order the pure-Python twin does.
pub fn parse<'a>(token: &'a str, expected_kind: &str) -> Result<ParsedToken<'a>, TokenFault> {
    if token.len() > MAX_TOKEN_LENGTH && token.chars().count() > MAX_TOKEN_LENGTH {
        return Err(TokenFault::TooLong);
    }
    if !token.is_ascii() {
        return Err(TokenFault::Malformed("not ASCII"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [kind, kid, payload_text, signature_text] = parts[..] else {
        return Err(TokenFault::Malformed("expected 4 dot-separated parts"));
    };
    if !is_valid_kind(kind) {
        return Err(TokenFault::Malformed("invalid kind"));
    }
    if !is_valid_kid(kid) {
        return Err(TokenFault::Malformed("invalid key id"));
    }
    let payload = decode_part(payload_text, "payload is not canonical base64url")?;
    let signature = decode_part(signature_text, "signature is not canonical base64url")?;
    let signature: [u8; SIGNATURE_LENGTH] = signature
        .try_into()
        .map_err(|_| TokenFault::Malformed("signature is not 64 bytes"))?;
    if kind != expected_kind {
        return Err(TokenFault::WrongKind {
            found: kind.to_string(),
            expected: expected_kind.to_string(),
        });
    }
    let signed = &token.as_bytes()[..token.len() - signature_text.len() - 1];
    Ok(ParsedToken {
        kid,
        signed,
        payload,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ed25519;

    const SEED: [u8; 32] = [4u8; 32];

    fn keys() -> impl Fn(&str) -> Option<[u8; 32]> {
        |kid| (kid == "k1").then(|| ed25519::public_key(&SEED))
    }

    fn decode(token: &str, kind: &str) -> Result<Vec<u8>, TokenFault> {
        let parsed = parse(token, kind)?;
        let key =
            keys()(parsed.kid).ok_or_else(|| TokenFault::UnknownKey(parsed.kid.to_string()))?;
        if ed25519::verify(&key, parsed.signed, &parsed.signature) {
            Ok(parsed.payload)
        } else {
            Err(TokenFault::BadSignature)
        }
    }

    #[test]
    fn a_kept_signer_makes_the_same_token_as_the_seed() {
        let signer = Signer::new(&SEED);
        for payload in [&b"{}"[..], b"{\"a\":1}"] {
            assert_eq!(
                encode_with("rs1", "k1", payload, &signer).unwrap(),
                encode("rs1", "k1", payload, &SEED).unwrap()
            );
        }
        assert_eq!(
            encode_with("BAD", "k1", b"{}", &signer),
            Err(INVALID_KIND.to_string())
        );
    }

    #[test]
    fn round_trips_and_keeps_kinds_apart() {
        let token = encode("lf1", "k1", b"{\"a\":1}", &SEED).unwrap();
        assert_eq!(decode(&token, "lf1").unwrap(), b"{\"a\":1}");
        assert!(matches!(
            decode(&token, "ls1"),
            Err(TokenFault::WrongKind { .. })
        ));
        let relabelled = token.replacen("lf1", "ls1", 1);
        assert_eq!(decode(&relabelled, "ls1"), Err(TokenFault::BadSignature));
    }

    #[test]
    fn every_single_bit_change_is_refused() {
        let token = encode("en1", "k1", b"payload bytes", &SEED).unwrap();
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut changed = bytes.to_vec();
                changed[i] ^= 1 << bit;
                if let Ok(text) = std::str::from_utf8(&changed) {
                    assert!(
                        decode(text, "en1").is_err(),
                        "bit {bit} of byte {i} went unnoticed"
                    );
                }
            }
        }
    }

    #[test]
    fn non_canonical_base64_is_malformed() {
        let token = encode("rs1", "k1", b"a", &SEED).unwrap();
        // "YQ" encodes b"a"; "YR" has non-zero trailing bits that a lenient decoder would drop.
        let lenient = token.replacen(".YQ.", ".YR.", 1);
        assert_eq!(
            parse(&lenient, "rs1").unwrap_err(),
            TokenFault::Malformed("payload is not canonical base64url")
        );
        assert_eq!(
            parse("a.b.c", "a").unwrap_err(),
            TokenFault::Malformed("expected 4 dot-separated parts")
        );
        assert_eq!(
            parse(&"x".repeat(MAX_TOKEN_LENGTH + 1), "a").unwrap_err(),
            TokenFault::TooLong
        );
    }

    #[test]
    fn unknown_kid_and_bad_arguments() {
        let token = encode("lf1", "k2", b"", &SEED).unwrap();
        assert_eq!(
            decode(&token, "lf1"),
            Err(TokenFault::UnknownKey("k2".into()))
        );
        assert!(encode("LF1", "k", b"", &SEED).is_err());
        assert!(encode("lf1", "k.1", b"", &SEED).is_err());
        assert!(encode("lf1", "k", &vec![0u8; MAX_TOKEN_LENGTH], &SEED).is_err());
    }
}
