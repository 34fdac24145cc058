//! Thin PyO3 wrappers: convert and check arguments exactly as `licensor._fallback` does, call the pure-Rust
//! logic, and raise the classes of `licensor.errors`. Batch work runs with the GIL released.

use std::collections::HashMap;

use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyInt, PyMapping, PySequence, PyString, PyTuple};

use crate::ed25519::{self, SEED_LENGTH};
use crate::fingerprint::{self, Weights, INVALID_THRESHOLD, INVALID_WEIGHT};
use crate::token::{self, TokenFault, INVALID_KIND, MAX_TOKEN_LENGTH};

fn licensor_error(py: Python<'_>, class: &str, message: String) -> PyResult<PyErr> {
    let class = py.import("licensor.errors")?.getattr(class)?;
    Ok(PyErr::from_value(class.call1((message,))?))
}

fn invalid_input(py: Python<'_>, message: impl Into<String>) -> PyErr {
    licensor_error(py, "InvalidInputError", message.into()).unwrap_or_else(|failure| failure)
}

fn token_error(py: Python<'_>, fault: &TokenFault) -> PyErr {
    let class = match fault {
        TokenFault::Malformed(_) | TokenFault::TooLong => "MalformedTokenError",
        TokenFault::WrongKind { .. } => "WrongTokenKindError",
        TokenFault::UnknownKey(_) => "UnknownKeyError",
        TokenFault::BadSignature => "BadSignatureError",
    };
    licensor_error(py, class, fault.message()).unwrap_or_else(|failure| failure)
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_string())
}

fn wrong_type(name: &str, expected: &str, value: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "{name} must be {expected}, not {}",
        type_name(value)
    ))
}

fn bytes_arg<'a>(value: &'a Bound<'_, PyAny>, name: &str) -> PyResult<&'a [u8]> {
    Ok(value
        .cast::<PyBytes>()
        .map_err(|_| wrong_type(name, "bytes", value))?
        .as_bytes())
}

fn str_arg(value: &Bound<'_, PyAny>, name: &str) -> PyResult<String> {
    let text = value
        .cast::<PyString>()
        .map_err(|_| wrong_type(name, "str", value))?;
    match text.to_str() {
        Ok(text) => Ok(text.to_string()),
        Err(_) => Err(invalid_input(
            value.py(),
            format!("{name} is not valid UTF-8"),
        )),
    }
}

fn seed_arg(value: &Bound<'_, PyAny>) -> PyResult<[u8; SEED_LENGTH]> {
    bytes_arg(value, "seed")?
        .try_into()
        .map_err(|_| invalid_input(value.py(), "seed must be 32 bytes"))
}

fn mapping_arg<'a, 'py>(
    value: &'a Bound<'py, PyAny>,
    name: &str,
) -> PyResult<&'a Bound<'py, PyMapping>> {
    value
        .cast::<PyMapping>()
        .map_err(|_| wrong_type(name, "a mapping", value))
}

/// The `(key, value)` pairs of a mapping's `items()`, in its order; anything but 2-tuples is a TypeError.
fn mapping_pairs<'py>(
    value: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    let mut pairs = Vec::new();
    for item in mapping_arg(value, name)?.items()?.iter() {
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| {
                PyTypeError::new_err(format!("{name} items must be (key, value) tuples"))
            })?;
        pairs.push((pair.get_item(0)?, pair.get_item(1)?));
    }
    Ok(pairs)
}

/// The items of a `Mapping[str, str]`, in its order, every key and value checked.
fn string_items(value: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<(String, String)>> {
    let mut items = Vec::new();
    for (key, value) in mapping_pairs(value, name)? {
        items.push((
            str_arg(&key, &format!("{name} component"))?,
            str_arg(&value, &format!("{name} value"))?,
        ));
    }
    Ok(items)
}

/// A number as the twin reads it: `int` or `float` only, and an `int` too large for a float is out of range.
fn number_arg(value: &Bound<'_, PyAny>, name: &str, out_of_range: &str) -> PyResult<f64> {
    if !(value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>()) {
        return Err(wrong_type(name, "a number", value));
    }
    value
        .extract::<f64>()
        .map_err(|_| invalid_input(value.py(), out_of_range))
}

fn weights_arg(value: &Bound<'_, PyAny>) -> PyResult<Weights> {
    let mut weights = Vec::new();
    for (name, weight) in mapping_pairs(value, "weights")? {
        let name = str_arg(&name, "weights component")?;
        let weight = number_arg(&weight, "weight", INVALID_WEIGHT)?;
        if !fingerprint::is_valid_weight(weight) {
            return Err(invalid_input(value.py(), INVALID_WEIGHT));
        }
        weights.push((name, weight));
    }
    Weights::new(weights).map_err(|message| invalid_input(value.py(), message))
}

fn threshold_arg(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    let threshold = number_arg(value, "threshold", INVALID_THRESHOLD)?;
    if !fingerprint::is_valid_threshold(threshold) {
        return Err(invalid_input(value.py(), INVALID_THRESHOLD));
    }
    Ok(threshold)
}

fn sequence_arg<'a, 'py>(
    value: &'a Bound<'py, PyAny>,
    name: &str,
) -> PyResult<&'a Bound<'py, PySequence>> {
    if value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>() {
        return Err(wrong_type(name, "a sequence", value));
    }
    value
        .cast::<PySequence>()
        .map_err(|_| wrong_type(name, "a sequence", value))
}

fn kind_arg(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let kind = str_arg(value, "kind")?;
    if !token::is_valid_kind(&kind) {
        return Err(invalid_input(value.py(), INVALID_KIND));
    }
    Ok(kind)
}

#[pyfunction]
fn generate_seed(py: Python<'_>) -> PyResult<Bound<'_, PyBytes>> {
    let mut seed = [0u8; SEED_LENGTH];
    getrandom::getrandom(&mut seed)
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &seed))
}

#[pyfunction]
fn public_key<'py>(seed: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        seed.py(),
        &ed25519::public_key(&seed_arg(seed)?),
    ))
}

#[pyfunction]
fn sign<'py>(
    seed: &Bound<'py, PyAny>,
    message: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let seed = seed_arg(seed)?;
    Ok(PyBytes::new(
        message.py(),
        &ed25519::sign(&seed, bytes_arg(message, "message")?),
    ))
}

#[pyfunction]
fn verify(
    public_key: &Bound<'_, PyAny>,
    message: &Bound<'_, PyAny>,
    signature: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let public_key = bytes_arg(public_key, "public_key")?;
    let message = bytes_arg(message, "message")?;
    let signature = bytes_arg(signature, "signature")?;
    Ok(ed25519::verify(public_key, message, signature))
}

type OwnedItem = (Vec<u8>, Vec<u8>, Vec<u8>);

fn batch_items(items: &Bound<'_, PyAny>) -> PyResult<Vec<OwnedItem>> {
    let mut owned = Vec::new();
    for item in sequence_arg(items, "items")?.try_iter()? {
        let item = item?;
        let tuple = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 3)
            .ok_or_else(|| {
                PyTypeError::new_err("each item must be a (public_key, message, signature) tuple")
            })?;
        owned.push((
            bytes_arg(&tuple.get_item(0)?, "public_key")?.to_vec(),
            bytes_arg(&tuple.get_item(1)?, "message")?.to_vec(),
            bytes_arg(&tuple.get_item(2)?, "signature")?.to_vec(),
        ));
    }
    Ok(owned)
}

fn verify_owned(py: Python<'_>, items: &[OwnedItem]) -> Vec<bool> {
    py.detach(|| ed25519::verify_batch(items.iter().map(|(k, m, s)| (&k[..], &m[..], &s[..]))))
}

#[pyfunction]
fn verify_batch(items: &Bound<'_, PyAny>) -> PyResult<Vec<bool>> {
    let owned = batch_items(items)?;
    Ok(verify_owned(items.py(), &owned))
}

/// The kind, key id and payload of a token to encode, checked in the order the twin checks them.
fn token_args<'a>(
    kind: &Bound<'_, PyAny>,
    kid: &Bound<'_, PyAny>,
    payload: &'a Bound<'_, PyAny>,
) -> PyResult<(String, String, &'a [u8])> {
    let kind = kind_arg(kind)?;
    let kid_text = str_arg(kid, "kid")?;
    if !token::is_valid_kid(&kid_text) {
        return Err(invalid_input(kid.py(), token::INVALID_KID));
    }
    Ok((kind, kid_text, bytes_arg(payload, "payload")?))
}

#[pyfunction]
fn encode_token(
    kind: &Bound<'_, PyAny>,
    kid: &Bound<'_, PyAny>,
    payload: &Bound<'_, PyAny>,
    seed: &Bound<'_, PyAny>,
) -> PyResult<String> {
    let (kind_text, kid, payload) = token_args(kind, kid, payload)?;
    let seed = seed_arg(seed)?;
    token::encode(&kind_text, &kid, payload, &seed)
        .map_err(|message| invalid_input(kind.py(), message))
}

/// A token text as the twin reads it: too long, then not ASCII (a string with lone surrogates included).
fn token_text(value: &Bound<'_, PyAny>) -> PyResult<Result<String, TokenFault>> {
    let text = value
        .cast::<PyString>()
        .map_err(|_| wrong_type("token", "str", value))?;
    if text.len()? > MAX_TOKEN_LENGTH {
        return Ok(Err(TokenFault::TooLong));
    }
    Ok(text
        .to_str()
        .map(str::to_string)
        .map_err(|_| TokenFault::Malformed("not ASCII")))
}

/// A token whose form, kind and key id are right: the key and the bytes to verify.
struct Checkable {
    payload: Vec<u8>,
    item: OwnedItem,
}

fn checkable(
    value: &Bound<'_, PyAny>,
    kind: &str,
    public_keys: &Bound<'_, PyMapping>,
) -> PyResult<Result<Checkable, TokenFault>> {
    let text = match token_text(value)? {
        Ok(text) => text,
        Err(fault) => return Ok(Err(fault)),
    };
    let parsed = match token::parse(&text, kind) {
        Ok(parsed) => parsed,
        Err(fault) => return Ok(Err(fault)),
    };
    let key = public_keys.call_method1("get", (parsed.kid,))?;
    if key.is_none() {
        return Ok(Err(TokenFault::UnknownKey(parsed.kid.to_string())));
    }
    let key = bytes_arg(&key, "public key")?.to_vec();
    Ok(Ok(Checkable {
        item: (key, parsed.signed.to_vec(), parsed.signature.to_vec()),
        payload: parsed.payload,
    }))
}

#[pyfunction]
fn decode_token<'py>(
    token: &Bound<'py, PyAny>,
    kind: &Bound<'py, PyAny>,
    public_keys: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let py = token.py();
    let kind = kind_arg(kind)?;
    let public_keys = mapping_arg(public_keys, "public_keys")?;
    let checked = checkable(token, &kind, public_keys)?.map_err(|fault| token_error(py, &fault))?;
    let (key, signed, signature) = &checked.item;
    if !ed25519::verify(key, signed, signature) {
        return Err(token_error(py, &TokenFault::BadSignature));
    }
    Ok(PyBytes::new(py, &checked.payload))
}

#[pyfunction]
fn decode_tokens<'py>(
    tokens: &Bound<'py, PyAny>,
    kind: &Bound<'py, PyAny>,
    public_keys: &Bound<'py, PyAny>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let py = tokens.py();
    let kind = kind_arg(kind)?;
    let public_keys = mapping_arg(public_keys, "public_keys")?;
    let mut outcomes = Vec::new();
    for token in sequence_arg(tokens, "tokens")?.try_iter()? {
        outcomes.push(checkable(&token?, &kind, public_keys)?);
    }
    let items: Vec<OwnedItem> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .map(|c| c.item.clone())
        .collect();
    let mut verdicts = verify_owned(py, &items).into_iter();
    outcomes
        .into_iter()
        .map(|outcome| {
            let fault = match outcome {
                Ok(checked) if verdicts.next() == Some(true) => {
                    return Ok(PyBytes::new(py, &checked.payload).into_any());
                }
                Ok(_) => TokenFault::BadSignature,
                Err(fault) => fault,
            };
            Ok(token_error(py, &fault)
                .into_value(py)
                .into_bound(py)
                .into_any())
        })
        .collect()
}

#[pyfunction]
fn fingerprint_score(
    stored: &Bound<'_, PyAny>,
    presented: &Bound<'_, PyAny>,
    weights: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    let stored = string_items(stored, "stored")?;
    let presented: HashMap<String, String> =
        string_items(presented, "presented")?.into_iter().collect();
    Ok(fingerprint::score(
        &stored,
        &presented,
        &weights_arg(weights)?,
    ))
}

/// A signing key expanded once and kept (see `_core.pyi`): signatures and tokens as `sign` and `encode_token`
/// make them with its seed, without deriving the public key again on every call.
#[pyclass(frozen, name = "Signer", module = "licensor._core")]
struct PySigner {
    signer: ed25519::Signer,
}

#[pymethods]
impl PySigner {
    #[new]
    fn new(seed: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(PySigner {
            signer: ed25519::Signer::new(&seed_arg(seed)?),
        })
    }

    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.signer.public_key())
    }

    fn sign<'py>(&self, message: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(
            message.py(),
            &self.signer.sign(bytes_arg(message, "message")?),
        ))
    }

    fn encode_token(
        &self,
        kind: &Bound<'_, PyAny>,
        kid: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<String> {
        let (kind_text, kid, payload) = token_args(kind, kid, payload)?;
        token::encode_with(&kind_text, &kid, payload, &self.signer)
            .map_err(|message| invalid_input(kind.py(), message))
    }
}

/// Stored fingerprints matched against a presented one (see `_core.pyi`).
#[pyclass(name = "FingerprintIndex", module = "licensor._core")]
struct PyFingerprintIndex {
    index: fingerprint::FingerprintIndex,
}

// Methods read their Python arguments before borrowing the index, so a mapping whose Python code uses the
// index while it is read finds it unborrowed.
#[pymethods]
impl PyFingerprintIndex {
    #[new]
    fn new(weights: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(PyFingerprintIndex {
            index: fingerprint::FingerprintIndex::new(weights_arg(weights)?),
        })
    }

    fn add(
        slf: &Bound<'_, Self>,
        id: &Bound<'_, PyAny>,
        fingerprint: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let id = str_arg(id, "id")?;
        let fingerprint = string_items(fingerprint, "fingerprint")?;
        slf.borrow_mut().index.add(id, fingerprint);
        Ok(())
    }

    fn remove(slf: &Bound<'_, Self>, id: &Bound<'_, PyAny>) -> PyResult<()> {
        let key = str_arg(id, "id")?;
        if slf.borrow_mut().index.remove(&key) {
            Ok(())
        } else {
            Err(PyKeyError::new_err(id.clone().unbind()))
        }
    }

    fn __len__(&self) -> usize {
        self.index.len()
    }

    fn __contains__(&self, id: &Bound<'_, PyAny>) -> bool {
        id.cast::<PyString>()
            .ok()
            .and_then(|s| s.to_str().ok().map(|s| self.index.contains(s)))
            .unwrap_or(false)
    }

    fn best_match(
        slf: &Bound<'_, Self>,
        presented: &Bound<'_, PyAny>,
        threshold: &Bound<'_, PyAny>,
    ) -> PyResult<Option<(String, f64)>> {
        let presented = string_items(presented, "presented")?;
        let threshold = threshold_arg(threshold)?;
        Ok(slf.borrow().index.best_match(&presented, threshold))
    }

    fn duplicates(
        slf: &Bound<'_, Self>,
        threshold: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<(String, String, f64)>> {
        let threshold = threshold_arg(threshold)?;
        Ok(slf.borrow().index.duplicates(threshold))
    }
}

#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("MAX_TOKEN_LENGTH", MAX_TOKEN_LENGTH)?;
    module.add_function(wrap_pyfunction!(generate_seed, module)?)?;
    module.add_function(wrap_pyfunction!(public_key, module)?)?;
    module.add_function(wrap_pyfunction!(sign, module)?)?;
    module.add_function(wrap_pyfunction!(verify, module)?)?;
    module.add_function(wrap_pyfunction!(verify_batch, module)?)?;
    module.add_function(wrap_pyfunction!(encode_token, module)?)?;
    module.add_function(wrap_pyfunction!(decode_token, module)?)?;
    module.add_function(wrap_pyfunction!(decode_tokens, module)?)?;
    module.add_function(wrap_pyfunction!(fingerprint_score, module)?)?;
    module.add_class::<PyFingerprintIndex>()?;
    module.add_class::<PySigner>()?;
    Ok(())
}
