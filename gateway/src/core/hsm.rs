//! The seal key in a hardware security module, over PKCS#11: the key is named
//! by an RFC 7512 URI (`pkcs11:token=…;object=…`), the module and PIN come from
//! `[pki.pkcs11]`. The key never leaves the token; the gateway only asks it to
//! sign (ES256: `CKM_ECDSA` over the SHA-256 the gateway computes; PS256:
//! `CKM_SHA256_RSA_PKCS_PSS`). A few sessions are kept open and used in turn,
//! each by one signer at a time; a session the token closed (a restart of the
//! HSM, a network HSM's failover) is opened again once before a signature is
//! given up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use ozg_adapter_sdk::SealSigner;

/// A PKCS#11 URI (RFC 7512) naming a private key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUri {
    pub token: Option<String>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub slot_id: Option<u64>,
    /// The key's `CKA_LABEL`.
    pub object: Option<String>,
    /// The key's `CKA_ID`.
    pub id: Option<Vec<u8>>,
    /// `module-path` in the query: the module, if the config names none.
    pub module_path: Option<PathBuf>,
}

/// `%XX` decoded.
fn unescape(value: &str) -> Result<Vec<u8>, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{value:?}: a % must be followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn text(value: &str) -> Result<String, String> {
    String::from_utf8(unescape(value)?).map_err(|_| format!("{value:?} is not UTF-8"))
}

impl KeyUri {
    /// Parses `pkcs11:attr=value;…[?attr=value&…]`. A PIN in the URI is
    /// refused (URIs end up in logs and process lists), as is anything the
    /// gateway would not understand: a key it cannot find exactly is no seal.
    pub fn parse(uri: &str) -> Result<KeyUri, String> {
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or("a PKCS#11 URI starts with \"pkcs11:\"")?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut k = KeyUri::default();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| format!("{attr:?} is not name=value"))?;
            match name {
                "token" => k.token = Some(text(value)?),
                "serial" => k.serial = Some(text(value)?),
                "manufacturer" => k.manufacturer = Some(text(value)?),
                "model" => k.model = Some(text(value)?),
                "object" => k.object = Some(text(value)?),
                "id" => k.id = Some(unescape(value)?),
                "slot-id" => {
                    k.slot_id = Some(
                        text(value)?
                            .parse()
                            .map_err(|_| format!("slot-id {value:?} is not a number"))?,
                    )
                }
                "type" if value == "private" => {}
                "type" => {
                    return Err(format!(
                        "type={value}: the seal is a private key (type=private)"
                    ))
                }
                other => return Err(format!("unknown attribute {other:?}")),
            }
        }
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            match name {
                "module-path" => k.module_path = Some(PathBuf::from(text(value)?)),
                "pin-value" | "pin-source" => {
                    return Err(
                        "no PIN in the URI: give it as pki.pkcs11.pin, e.g. \"${OZG_HSM_PIN}\""
                            .into(),
                    )
                }
                other => return Err(format!("unknown query attribute {other:?}")),
            }
        }
        if k.object.is_none() && k.id.is_none() {
            return Err("name the key: object=<label> or id=<%XX…>".into());
        }
        Ok(k)
    }

    /// The URI as the logs show it: what names the key, nothing else.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        for (name, value) in [
            ("token", &self.token),
            ("serial", &self.serial),
            ("object", &self.object),
        ] {
            if let Some(v) = value {
                parts.push(format!("{name}={v}"));
            }
        }
        if let Some(id) = &self.id {
            parts.push(format!("id={}", hex::encode(id)));
        }
        format!("pkcs11:{}", parts.join(";"))
    }
}

/// The module once per process: a second `C_Initialize` of the same module
/// is an error, and a `C_Finalize` would end every other user's sessions.
fn module(path: &Path) -> Result<Pkcs11, String> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Mutex::default)
        .lock()
        .map_err(|_| "the PKCS#11 module table is poisoned".to_owned())?;
    if let Some(m) = modules.get(path) {
        return Ok(m.clone());
    }
    let m = Pkcs11::new(path).map_err(|e| format!("loading {}: {e}", path.display()))?;
    match m.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(format!("initialising {}: {}", path.display(), why(&e))),
    }
    modules.insert(path.to_owned(), m.clone());
    Ok(m)
}

/// A PKCS#11 error in one line (the crate's texts quote the standard at length).
fn why(e: &P11Error) -> String {
    match e {
        P11Error::Pkcs11(rv, function) => format!("{function:?} failed: {rv:?}"),
        other => other.to_string(),
    }
}

/// Errors after which a fresh session may succeed.
fn session_lost(e: &P11Error) -> bool {
    matches!(
        e,
        P11Error::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid,
            _
        )
    )
}

/// How the token is reached and logged into.
struct Access {
    module: Pkcs11,
    slot: Slot,
    pin: Option<AuthPin>,
    uri: KeyUri,
}

impl Access {
    /// A logged-in session and the key's handle in it.
    fn open(&self) -> Result<(Session, ObjectHandle), String> {
        let session = self
            .module
            .open_ro_session(self.slot)
            .map_err(|e| why(&e))?;
        if let Some(pin) = &self.pin {
            match session.login(UserType::User, Some(pin)) {
                Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(P11Error::Pkcs11(RvError::PinIncorrect, _)) => {
                    return Err("the token refused the PIN (pki.pkcs11.pin)".into())
                }
                Err(e) => return Err(why(&e)),
            }
        }
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(label) = &self.uri.object {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &self.uri.id {
            template.push(Attribute::Id(id.clone()));
        }
        let keys = session.find_objects(&template).map_err(|e| why(&e))?;
        match keys.as_slice() {
            [key] => Ok((session, *key)),
            [] => Err(format!(
                "no private key {} on the token (or the PIN is missing: private keys are found only after login)",
                self.uri.describe()
            )),
            many => Err(format!(
                "{} private keys match {}: name one by id",
                many.len(),
                self.uri.describe()
            )),
        }
    }
}

/// The seal key on a token.
pub struct TokenSigner {
    access: Access,
    /// Sessions, each used by one signer at a time, taken in turn.
    sessions: Vec<Mutex<Option<(Session, ObjectHandle)>>>,
    next: AtomicUsize,
    /// ES256 (else PS256).
    ec: bool,
}

/// `[pki.pkcs11]` as the signer needs it.
pub struct TokenSettings<'a> {
    pub module: Option<&'a Path>,
    pub pin: Option<&'a str>,
    pub sessions: usize,
}

impl TokenSigner {
    /// Finds the token and the key, logs in and opens the sessions. `ec`: the
    /// seal certificate's key is EC P-256 (else RSA).
    pub fn open(uri: &str, settings: TokenSettings<'_>, ec: bool) -> Result<TokenSigner, String> {
        let uri = KeyUri::parse(uri)?;
        let path = settings
            .module
            .map(Path::to_owned)
            .or_else(|| uri.module_path.clone())
            .ok_or(
                "no PKCS#11 module: set pki.pkcs11.module (e.g. /usr/lib/softhsm/libsofthsm2.so)",
            )?;
        let module = module(&path)?;
        let mut found = Vec::new();
        for slot in module.get_slots_with_token().map_err(|e| why(&e))? {
            if uri.slot_id.is_some_and(|id| id != slot.id()) {
                continue;
            }
            let info = module.get_token_info(slot).map_err(|e| why(&e))?;
            let matches = |want: &Option<String>, have: &str| {
                want.as_deref().is_none_or(|w| w == have.trim_end())
            };
            if matches(&uri.token, info.label())
                && matches(&uri.serial, info.serial_number())
                && matches(&uri.manufacturer, info.manufacturer_id())
                && matches(&uri.model, info.model())
            {
                found.push(slot);
            }
        }
        let slot = match found.as_slice() {
            [slot] => *slot,
            [] => {
                return Err(format!(
                    "no token matches {} in {}",
                    uri.describe(),
                    path.display()
                ))
            }
            many => {
                return Err(format!(
                    "{} tokens match {}: name one by token, serial or slot-id",
                    many.len(),
                    uri.describe()
                ))
            }
        };
        let access = Access {
            module,
            slot,
            pin: settings.pin.map(|p| AuthPin::new(p.into())),
            uri,
        };
        let mut sessions = Vec::new();
        for _ in 0..settings.sessions.max(1) {
            sessions.push(Mutex::new(Some(access.open()?)));
        }
        Ok(TokenSigner {
            access,
            sessions,
            next: AtomicUsize::new(0),
            ec,
        })
    }

    fn mechanism(&self) -> Mechanism<'static> {
        if self.ec {
            Mechanism::Ecdsa
        } else {
            Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
                hash_alg: MechanismType::SHA256,
                mgf: PkcsMgfType::MGF1_SHA256,
                s_len: 32u64.into(),
            })
        }
    }
}

impl SealSigner for TokenSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let digest;
        let data = if self.ec {
            digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, msg);
            digest.as_ref()
        } else {
            msg
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
        let mut slot = self.sessions[i]
            .lock()
            .map_err(|_| "a token session is poisoned".to_owned())?;
        let mechanism = self.mechanism();
        for attempt in 0..2 {
            if slot.is_none() {
                *slot = Some(self.access.open()?);
            }
            let Some((session, key)) = slot.as_ref() else {
                continue;
            };
            match session.sign(&mechanism, *key, data) {
                Ok(sig) if !self.ec || sig.len() == 64 => return Ok(sig),
                Ok(sig) => {
                    return Err(format!(
                        "the token gave a {}-byte ECDSA signature, not 64 (is the key P-256?)",
                        sig.len()
                    ))
                }
                Err(e) if attempt == 0 && session_lost(&e) => {
                    tracing::warn!(key = %self.access.uri.describe(), error = %why(&e), "the token session was lost; opening a new one");
                    *slot = None;
                }
                Err(e) => return Err(why(&e)),
            }
        }
        Err("the token session could not be opened again".into())
    }

    fn describe(&self) -> String {
        self.access.uri.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_names_token_and_key() {
        let k =
            KeyUri::parse("pkcs11:token=OZG%20Seal;object=seal;id=%01%a2;type=private").unwrap();
        assert_eq!(k.token.as_deref(), Some("OZG Seal"));
        assert_eq!(k.object.as_deref(), Some("seal"));
        assert_eq!(k.id, Some(vec![1, 0xa2]));
        assert_eq!(k.describe(), "pkcs11:token=OZG Seal;object=seal;id=01a2");
        let k = KeyUri::parse("pkcs11:object=s?module-path=/usr/lib/x.so").unwrap();
        assert_eq!(k.module_path, Some(PathBuf::from("/usr/lib/x.so")));
    }

    #[test]
    fn a_uri_with_a_pin_or_unknown_parts_is_refused() {
        for (uri, says) in [
            ("pkcs11:object=s?pin-value=1234", "no PIN in the URI"),
            ("pkcs11:object=s?pin-source=file:/p", "no PIN in the URI"),
            ("pkcs11:object=s;colour=red", "unknown attribute"),
            ("pkcs11:token=t", "name the key"),
            ("pkcs11:object=s;type=cert", "private key"),
            ("pkcs11:object=%zz", "two hex digits"),
            ("file:/etc/key.pem", "starts with"),
        ] {
            let e = KeyUri::parse(uri).unwrap_err();
            assert!(e.contains(says), "{uri}: {e}");
        }
        assert!(crate::config::is_pkcs11_uri(Path::new("pkcs11:object=s")));
        assert!(!crate::config::is_pkcs11_uri(Path::new(
            "/etc/ozg/seal.key"
        )));
    }
}
