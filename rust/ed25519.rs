//! Strict Ed25519: signing, single verification and batch verification that agree item by item.
//!
//! A signature is valid only if the public key `A` and the commitment `R` are canonical encodings of
//! points that are not of small order, `S` is canonical (`S < L`), and `[S]B = R + [k]A` holds without
//! the cofactor. The pure-Python twin applies the same rules on top of OpenSSL.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha512};

pub const SEED_LENGTH: usize = 32;
pub const PUBLIC_KEY_LENGTH: usize = 32;
pub const SIGNATURE_LENGTH: usize = 64;

/// The canonical encodings of the eight points of small order (checked against the curve's own
/// 8-torsion in the tests). Non-canonical encodings of them fail the canonical-encoding check first.
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = [
    hex32("0100000000000000000000000000000000000000000000000000000000000000"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("0000000000000000000000000000000000000000000000000000000000000000"),
    hex32("0000000000000000000000000000000000000000000000000000000000000080"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
];

const fn hex32(text: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a hex digit"),
        }
    }
    let bytes = text.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(bytes[2 * i]) << 4 | nibble(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

/// Whether a point encoding is the one canonical encoding of its point: `y < p`, and no sign bit on the
/// two points whose `x` is 0 (`y = 1` and `y = p - 1`).
pub fn is_canonical_point(encoding: &[u8; 32]) -> bool {
    // p = 2^255 - 19: y >= p exactly when the low 255 bits are all ones except in the lowest byte,
    // which is at least 0xed.
    let high_all_ones = encoding[1..31].iter().all(|&b| b == 0xff) && encoding[31] & 0x7f == 0x7f;
    if high_all_ones && encoding[0] >= 0xed {
        return false;
    }
    let sign = encoding[31] & 0x80 != 0;
    let is_y_one =
        encoding[0] == 1 && encoding[1..31].iter().all(|&b| b == 0) && encoding[31] & 0x7f == 0;
    let is_y_minus_one = high_all_ones && encoding[0] == 0xec;
    !(sign && (is_y_one || is_y_minus_one))
}

fn is_small_order_encoding(encoding: &[u8; 32]) -> bool {
    SMALL_ORDER_ENCODINGS.iter().any(|small| small == encoding)
}

fn acceptable_point(encoding: &[u8; 32]) -> bool {
    is_canonical_point(encoding) && !is_small_order_encoding(encoding)
}

pub fn public_key(seed: &[u8; SEED_LENGTH]) -> [u8; PUBLIC_KEY_LENGTH] {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

pub fn sign(seed: &[u8; SEED_LENGTH], message: &[u8]) -> [u8; SIGNATURE_LENGTH] {
    Signer::new(seed).sign(message)
}

/// A signing key expanded once (its public key computed, which costs a scalar multiplication) and kept, so that
/// each signature costs only the signing itself. Signatures are those of [`sign`] with the same seed.
pub struct Signer {
    key: SigningKey,
}

impl Signer {
    pub fn new(seed: &[u8; SEED_LENGTH]) -> Self {
        Signer {
            key: SigningKey::from_bytes(seed),
        }
    }

    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LENGTH] {
        self.key.sign(message).to_bytes()
    }

    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LENGTH] {
        self.key.verifying_key().to_bytes()
    }
}

/// The parts of a signature that passed every check that needs no curve arithmetic beyond decompression.
struct Prepared {
    key_index: usize,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

fn split(public_key: &[u8], signature: &[u8]) -> Option<([u8; 32], [u8; 32], [u8; 32])> {
    let key: [u8; 32] = public_key.try_into().ok()?;
    let signature: &[u8; 64] = signature.try_into().ok()?;
    let r: [u8; 32] = signature[..32].try_into().ok()?;
    let s: [u8; 32] = signature[32..].try_into().ok()?;
    Some((key, r, s))
}

/// Verify one signature strictly. Any key or signature bytes, of any length, are simply not valid.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Some((key, r, s)) = split(public_key, signature) else {
        return false;
    };
    if !acceptable_point(&key)
        || !acceptable_point(&r)
        || Option::<Scalar>::from(Scalar::from_canonical_bytes(s)).is_none()
    {
        return false;
    }
    let Ok(verifying_key) = VerifyingKey::from_bytes(&key) else {
        return false;
    };
    let signature: [u8; 64] = signature.try_into().expect("length checked by split");
    verifying_key
        .verify_strict(message, &Signature::from_bytes(&signature))
        .is_ok()
}

/// Public keys met in earlier batches, decompressed and checked for torsion: the same devices and tenants
/// sign request after request, so a key's decompression and torsion check are paid once, not per batch.
/// Both are facts about the key's bytes alone, so the cache changes no result. Bounded: when full, it starts
/// afresh.
static KNOWN_KEYS: OnceLock<Mutex<KnownKeys>> = OnceLock::new();
/// A public key's bytes -> the key decompressed, and whether it is torsion-free.
type KnownKeys = HashMap<[u8; 32], (EdwardsPoint, bool)>;
const KNOWN_KEYS_MAX: usize = 65_536;

fn known_keys() -> std::sync::MutexGuard<'static, HashMap<[u8; 32], (EdwardsPoint, bool)>> {
    // A panic while holding the lock cannot leave the map half-updated (inserts and clears are atomic).
    KNOWN_KEYS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Decompressed public keys of a batch, each decompressed (and checked for torsion) once however many
/// items share it, and once across batches (`KNOWN_KEYS`).
struct KeyTable {
    index: HashMap<[u8; 32], usize>,
    keys: Vec<[u8; 32]>,
    points: Vec<EdwardsPoint>,
    torsion_free: Vec<Option<bool>>,
}

impl KeyTable {
    fn new() -> Self {
        KeyTable {
            index: HashMap::new(),
            keys: Vec::new(),
            points: Vec::new(),
            torsion_free: Vec::new(),
        }
    }

    fn intern(&mut self, key: &[u8; 32]) -> Option<usize> {
        if let Some(&i) = self.index.get(key) {
            return Some(i);
        }
        let known = known_keys().get(key).copied();
        let (point, torsion_free) = match known {
            Some((point, clean)) => (point, Some(clean)),
            None => (CompressedEdwardsY(*key).decompress()?, None),
        };
        self.keys.push(*key);
        self.points.push(point);
        self.torsion_free.push(torsion_free);
        self.index.insert(*key, self.points.len() - 1);
        Some(self.points.len() - 1)
    }

    /// Whether each key of `group` is torsion-free, each key checked once.
    fn torsion_free_keys(&mut self, group: &[&Prepared]) -> Vec<bool> {
        let mut unknown: Vec<usize> = group
            .iter()
            .map(|item| item.key_index)
            .filter(|&i| self.torsion_free[i].is_none())
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        let points: Vec<EdwardsPoint> = unknown.iter().map(|&i| self.points[i]).collect();
        let flags = torsion_free_flags(&points);
        let mut known = known_keys();
        if known.len() + unknown.len() > KNOWN_KEYS_MAX {
            known.clear();
        }
        for (i, clean) in unknown.into_iter().zip(flags) {
            self.torsion_free[i] = Some(clean);
            known.insert(self.keys[i], (self.points[i], clean));
        }
        group
            .iter()
            .map(|item| self.torsion_free[item.key_index] == Some(true))
            .collect()
    }
}

fn prepare(
    keys: &mut KeyTable,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Option<Prepared> {
    let (key, r_bytes, s_bytes) = split(public_key, signature)?;
    if !acceptable_point(&key) || !acceptable_point(&r_bytes) {
        return None;
    }
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let key_index = keys.intern(&key)?;
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(r_bytes)
            .chain_update(key)
            .chain_update(message),
    );
    Some(Prepared { key_index, r, s, k })
}

/// `[L]P = 0`, computed as `[L - 1]P + P` in variable time (the inputs are public).
fn is_torsion_free(point: &EdwardsPoint) -> bool {
    let l_minus_one = -Scalar::ONE;
    (EdwardsPoint::vartime_double_scalar_mul_basepoint(&l_minus_one, point, &Scalar::ZERO) + point)
        .is_identity()
}

/// Rounds of the subset-sum torsion test: each lets a torsion component through with probability at most
/// 1/2, so a batch with one goes unnoticed with probability at most 2^-64.
const TORSION_ROUNDS: usize = 64;
/// From this many points on, the subset-sum test costs less than one check per point.
const TORSION_SUBSET_TEST_FROM: usize = 80;

fn random_bytes(count: usize) -> Vec<u8> {
    let mut entropy = vec![0u8; count];
    getrandom::getrandom(&mut entropy).expect("the operating system's random source failed");
    entropy
}

/// Whether every point is torsion-free, checked on the sums of random subsets: if some point carries a
/// torsion component `t`, a subset sum and the same sum with that point toggled differ by `t`, so at
/// most half the subsets sum to a torsion-free point. Subsets are summed four points at a time from a
/// table of the 16 sums of each group of four.
fn all_torsion_free(points: &[EdwardsPoint]) -> bool {
    let tables: Vec<[EdwardsPoint; 16]> = points
        .chunks(4)
        .map(|group| {
            let mut table = [EdwardsPoint::identity(); 16];
            for mask in 1..16usize {
                let lowest = mask.trailing_zeros() as usize;
                let rest = mask & (mask - 1);
                table[mask] = match group.get(lowest) {
                    Some(point) if rest == 0 => *point,
                    Some(point) => table[rest] + point,
                    None => table[rest],
                };
            }
            table
        })
        .collect();
    let nibbles = random_bytes(TORSION_ROUNDS * tables.len());
    nibbles.chunks_exact(tables.len()).all(|round| {
        let mut sum = EdwardsPoint::identity();
        for (table, choice) in tables.iter().zip(round) {
            let mask = (choice & 0x0f) as usize;
            if mask != 0 {
                sum += table[mask];
            }
        }
        is_torsion_free(&sum)
    })
}

/// Which of `points` are torsion-free.
fn torsion_free_flags(points: &[EdwardsPoint]) -> Vec<bool> {
    if points.len() >= TORSION_SUBSET_TEST_FROM && all_torsion_free(points) {
        return vec![true; points.len()];
    }
    points.iter().map(is_torsion_free).collect()
}

fn random_coefficients(count: usize) -> Vec<Scalar> {
    // 128-bit random coefficients: a forged item passes the combined equation with probability 2^-128.
    random_bytes(count * 16)
        .chunks_exact(16)
        .map(|chunk| {
            let mut wide = [0u8; 32];
            wide[..16].copy_from_slice(chunk);
            Scalar::from_bytes_mod_order(wide)
        })
        .collect()
}

/// Whether `[8](sum z_i (S_i B - R_i - k_i A_i)) = 0` for random `z_i`: one multi-scalar multiplication
/// for the whole group, with the terms of a shared key merged.
fn combined_equation_holds(keys: &KeyTable, group: &[&Prepared]) -> bool {
    let z = random_coefficients(group.len());
    let mut base_coefficient = Scalar::ZERO;
    let mut key_coefficients: HashMap<usize, Scalar> = HashMap::new();
    let mut scalars = Vec::with_capacity(group.len() * 2 + 1);
    let mut points = Vec::with_capacity(group.len() * 2 + 1);
    for (item, z) in group.iter().zip(&z) {
        base_coefficient -= z * item.s;
        *key_coefficients
            .entry(item.key_index)
            .or_insert(Scalar::ZERO) += z * item.k;
        scalars.push(*z);
        points.push(item.r);
    }
    scalars.push(base_coefficient);
    points.push(ED25519_BASEPOINT_POINT);
    for (key_index, coefficient) in key_coefficients {
        scalars.push(coefficient);
        points.push(keys.points[key_index]);
    }
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

/// Groups smaller than this are verified item by item: below it the fixed costs of the combined
/// equation and the torsion checks outweigh what they save. Measured on the development machine with
/// distinct, already known keys (batch CPU over one by one): 1.05 at 64, 0.90 at 96, 0.59 at 256, 0.44 at 512.
const BATCH_FROM: usize = 96;

/// Verify many signatures; each result equals [`verify`] of that item.
///
/// The combined equation carries the cofactor, so it alone would accept a signature whose `R` or `A`
/// carries a small-order component that the single, cofactorless equation refuses (only the key's holder
/// can make one). Items of a passing group are therefore accepted outright only when `A` and `R` are
/// torsion-free; any other item is verified on its own. A failing group is bisected to find the bad items;
/// small groups are verified item by item.
pub fn verify_batch<'a>(
    items: impl IntoIterator<Item = (&'a [u8], &'a [u8], &'a [u8])>,
) -> Vec<bool> {
    let items: Vec<_> = items.into_iter().collect();
    if items.len() < BATCH_FROM {
        // Too few to share the work: preparing them for the combined equation would only be done twice.
        return items
            .iter()
            .map(|&(key, message, signature)| verify(key, message, signature))
            .collect();
    }
    let mut keys = KeyTable::new();
    let prepared: Vec<Option<Prepared>> = items
        .iter()
        .map(|&(key, message, signature)| prepare(&mut keys, key, message, signature))
        .collect();
    let mut results = vec![false; items.len()];
    let candidates: Vec<usize> = (0..items.len())
        .filter(|&i| prepared[i].is_some())
        .collect();
    let mut pending = vec![candidates];
    while let Some(group) = pending.pop() {
        if group.len() < BATCH_FROM {
            for &i in &group {
                results[i] = verify(items[i].0, items[i].1, items[i].2);
            }
            continue;
        }
        let members: Vec<&Prepared> = group
            .iter()
            .map(|&i| prepared[i].as_ref().expect("candidate"))
            .collect();
        if combined_equation_holds(&keys, &members) {
            let commitments: Vec<EdwardsPoint> = members.iter().map(|item| item.r).collect();
            let clean_commitments = torsion_free_flags(&commitments);
            let clean_keys = keys.torsion_free_keys(&members);
            for ((&i, clean_commitment), clean_key) in
                group.iter().zip(clean_commitments).zip(clean_keys)
            {
                results[i] =
                    (clean_commitment && clean_key) || verify(items[i].0, items[i].1, items[i].2);
            }
        } else {
            let (left, right) = group.split_at(group.len() / 2);
            pending.push(left.to_vec());
            pending.push(right.to_vec());
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;

    fn seed(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn small_order_list_is_the_curves_eight_torsion() {
        let mut expected: Vec<[u8; 32]> = EIGHT_TORSION
            .iter()
            .map(|p| p.compress().to_bytes())
            .collect();
        let mut listed = SMALL_ORDER_ENCODINGS.to_vec();
        expected.sort();
        listed.sort();
        assert_eq!(expected, listed);
    }

    #[test]
    fn signs_and_verifies_rfc8032_test_1() {
        let seed = hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let expected_key =
            hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        assert_eq!(public_key(&seed), expected_key);
        let signature = sign(&seed, b"");
        assert_eq!(
            hex::encode(signature),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert!(verify(&expected_key, b"", &signature));
        assert!(!verify(&expected_key, b"x", &signature));
    }

    #[test]
    fn a_kept_signer_signs_as_the_seed_does_call_after_call() {
        let signer = Signer::new(&seed(7));
        assert_eq!(signer.public_key(), public_key(&seed(7)));
        for message in [&b""[..], b"m", b"rs1.k1.e30"] {
            assert_eq!(signer.sign(message), sign(&seed(7), message));
            assert_eq!(signer.sign(message), signer.sign(message));
        }
    }

    #[test]
    fn wrong_lengths_are_rejected_not_panicked() {
        let key = public_key(&seed(1));
        let signature = sign(&seed(1), b"m");
        assert!(!verify(&key[..31], b"m", &signature));
        assert!(!verify(&key, b"m", &signature[..63]));
        assert!(!verify(&[], b"m", &[]));
        assert_eq!(
            verify_batch([(&key[..31], &b"m"[..], &signature[..])]),
            vec![false]
        );
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        let mut y_is_p = [0xffu8; 32];
        y_is_p[0] = 0xed;
        y_is_p[31] = 0x7f;
        assert!(!is_canonical_point(&y_is_p));
        let mut minus_zero = SMALL_ORDER_ENCODINGS[0];
        minus_zero[31] |= 0x80;
        assert!(!is_canonical_point(&minus_zero));
        assert!(is_canonical_point(&public_key(&seed(3))));
    }

    #[test]
    fn non_canonical_s_is_refused() {
        let key = public_key(&seed(2));
        let mut signature = sign(&seed(2), b"m");
        // S + L encodes the same scalar non-canonically.
        let l = hex32("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = signature[32 + i] as u16 + l[i] as u16 + carry;
            signature[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert!(!verify(&key, b"m", &signature));
        assert_eq!(
            verify_batch([(&key[..], &b"m"[..], &signature[..])]),
            vec![false]
        );
    }

    #[test]
    fn batch_matches_single_and_finds_every_bad_item() {
        let mut owned = Vec::new();
        for i in 0..BATCH_FROM as u8 + 3 {
            let message = vec![i; i as usize];
            let mut signature = sign(&seed(i % 5), &message);
            if i % 7 == 3 {
                signature[5] ^= 1;
            }
            owned.push((
                public_key(&seed(i % 5)).to_vec(),
                message,
                signature.to_vec(),
            ));
        }
        let batch = verify_batch(owned.iter().map(|(k, m, s)| (&k[..], &m[..], &s[..])));
        let single: Vec<bool> = owned.iter().map(|(k, m, s)| verify(k, m, s)).collect();
        assert_eq!(batch, single);
        assert_eq!(
            batch.iter().filter(|ok| !**ok).count(),
            (0..BATCH_FROM + 3).filter(|i| i % 7 == 3).count()
        );
    }

    #[test]
    fn subset_test_finds_one_torsion_component_among_many() {
        let mut points: Vec<EdwardsPoint> = (1..=200u64)
            .map(|i| EdwardsPoint::mul_base(&Scalar::from(i * 7919)))
            .collect();
        assert!(all_torsion_free(&points));
        points[137] += EIGHT_TORSION[4];
        assert!(!all_torsion_free(&points));
        let flags = torsion_free_flags(&points);
        assert_eq!(flags.iter().position(|clean| !clean), Some(137));
        assert_eq!(flags.iter().filter(|clean| !**clean).count(), 1);
    }

    #[test]
    fn batch_refuses_a_torsion_component_that_the_cofactor_would_hide() {
        // The key's holder signs with R' = R + T (T of order 2): the cofactored combined equation holds,
        // the strict cofactorless one does not, and the batch must follow the latter.
        let seed = seed(9);
        let signing = SigningKey::from_bytes(&seed);
        let expanded = Sha512::digest(seed);
        let mut a_bytes = [0u8; 32];
        a_bytes.copy_from_slice(&expanded[..32]);
        let a = Scalar::from_bytes_mod_order(curve25519_dalek::scalar::clamp_integer(a_bytes));
        let key = signing.verifying_key().to_bytes();
        let message = b"torsion";
        let r = Scalar::from_bytes_mod_order([7u8; 32]);
        let r_point = EdwardsPoint::mul_base(&r) + EIGHT_TORSION[4];
        let r_bytes = r_point.compress().to_bytes();
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(r_bytes)
                .chain_update(key)
                .chain_update(message),
        );
        let s = r + k * a;
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&r_bytes);
        signature[32..].copy_from_slice(s.as_bytes());
        assert!(!verify(&key, message, &signature));
        let good = sign(&seed, b"fine");
        let results = verify_batch([
            (&key[..], &message[..], &signature[..]),
            (&key[..], &b"fine"[..], &good[..]),
        ]);
        assert_eq!(results, vec![false, true]);
    }

    /// A signature by the secret scalar `a` whose key and commitment carry the torsion points `key_torsion`
    /// and `r_torsion`: valid without the cofactor only when those parts cancel.
    fn signed_with_torsion(
        a: Scalar,
        key_torsion: EdwardsPoint,
        r_torsion: EdwardsPoint,
        message: &[u8],
    ) -> ([u8; 32], [u8; 64]) {
        let key = (EdwardsPoint::mul_base(&a) + key_torsion)
            .compress()
            .to_bytes();
        let r = Scalar::from_hash(
            Sha512::new()
                .chain_update(a.as_bytes())
                .chain_update(message),
        );
        let r_bytes = (EdwardsPoint::mul_base(&r) + r_torsion)
            .compress()
            .to_bytes();
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(r_bytes)
                .chain_update(key)
                .chain_update(message),
        );
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&r_bytes);
        signature[32..].copy_from_slice((r + k * a).as_bytes());
        (key, signature)
    }

    #[test]
    fn large_batches_agree_with_single_on_torsion_components_also_with_known_keys() {
        // Enough items for the combined equation; honest signers, a key with a torsion component (its
        // signatures verify exactly when k is even), and commitments with one. The second round meets every key
        // again, from the known keys: the results must not change.
        let mut owned: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = Vec::new();
        for i in 0..BATCH_FROM as u8 + 10 {
            let message = vec![i; 40];
            let (key, signature) = match i % 10 {
                3 => signed_with_torsion(
                    Scalar::from(1000u64 + u64::from(i)),
                    EIGHT_TORSION[4],
                    EdwardsPoint::identity(),
                    &message,
                ),
                7 => signed_with_torsion(
                    Scalar::from(77u64),
                    EdwardsPoint::identity(),
                    EIGHT_TORSION[2],
                    &message,
                ),
                _ => (public_key(&seed(i % 13)), sign(&seed(i % 13), &message)),
            };
            owned.push((key.to_vec(), message, signature.to_vec()));
        }
        let single: Vec<bool> = owned.iter().map(|(k, m, s)| verify(k, m, s)).collect();
        assert!(
            single.iter().filter(|ok| !**ok).count() >= 10,
            "torsion components make some items invalid"
        );
        for _ in 0..2 {
            assert_eq!(
                verify_batch(owned.iter().map(|(k, m, s)| (&k[..], &m[..], &s[..]))),
                single
            );
        }
    }
}

#[cfg(test)]
mod wycheproof {
    //! Project Wycheproof's Ed25519 vectors, the same file the Python suite reads.
    use super::*;

    #[test]
    fn all_wycheproof_vectors_single_and_batch() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/vectors/wycheproof_ed25519_test.json"
        );
        let text = std::fs::read_to_string(path).expect("../shared/vectors beside the repository");
        let suite: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut cases = Vec::new();
        for group in suite["testGroups"].as_array().unwrap() {
            let key = hex::decode(group["publicKey"]["pk"].as_str().unwrap()).unwrap();
            for test in group["tests"].as_array().unwrap() {
                let message = hex::decode(test["msg"].as_str().unwrap()).unwrap();
                let signature = hex::decode(test["sig"].as_str().unwrap()).unwrap();
                let valid = test["result"].as_str().unwrap() == "valid";
                cases.push((
                    test["tcId"].as_u64().unwrap(),
                    key.clone(),
                    message,
                    signature,
                    valid,
                ));
            }
        }
        assert_eq!(cases.len(), 151);
        for (id, key, message, signature, valid) in &cases {
            assert_eq!(verify(key, message, signature), *valid, "tcId {id}");
        }
        let batch = verify_batch(cases.iter().map(|(_, k, m, s, _)| (&k[..], &m[..], &s[..])));
        let expected: Vec<bool> = cases.iter().map(|case| case.4).collect();
        assert_eq!(batch, expected);
    }
}
