//! How a target's adapter settings become an adapter: the [`AdapterConfig`] trait.
//!
//! Each adapter's config type (the keys under `[targets.<id>.adapter]`) implements
//! it, so the gateway treats every adapter alike and knows none of them by name:
//! after parsing it resolves the relative paths in the settings against the
//! config file's directory ([`AdapterConfig::resolve_paths`]), and at start-up (and
//! in `config check`) it asks the settings to check themselves, prepare what the
//! adapter needs and build it ([`AdapterConfig::build`]). A refusal is an
//! [`AdapterConfigError`]: the problem and what to do about it, which the gateway
//! prints with the file and the target's key.
//!
//! Nothing here reads or writes files; an implementation's `build` may (it reads
//! certificates, creates an import directory).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::adapter::Adapter;

/// The fix shown when an adapter has nothing more specific to suggest.
pub const GENERIC_FIX: &str = "fix the adapter settings of this target";

/// Why an adapter's settings were refused: what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct AdapterConfigError {
    /// What is wrong, naming the file or value concerned, e.g.
    /// `cannot create the directory /srv/dms/in: Permission denied (os error 13)`.
    pub problem: String,
    /// What the operator should do next.
    pub fix: String,
}

impl AdapterConfigError {
    /// A problem with the generic fix ([`GENERIC_FIX`]).
    pub fn new(problem: impl Into<String>) -> Self {
        AdapterConfigError {
            problem: problem.into(),
            fix: GENERIC_FIX.into(),
        }
    }

    /// Replaces the fix with a more specific one.
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = fix.into();
        self
    }
}

/// What every adapter's config type implements: the gateway's one way to handle
/// the settings of any adapter.
pub trait AdapterConfig {
    /// Every file or directory path in the settings (certificates, keys,
    /// directories), so that relative ones can be resolved. An adapter whose
    /// settings hold no path returns an empty list.
    fn paths_mut(&mut self) -> Vec<&mut PathBuf>;

    /// Makes every relative path in the settings relative to `base` (the
    /// directory of the config file); absolute paths stay as they are.
    fn resolve_paths(&mut self, base: &Path) {
        for path in self.paths_mut() {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Checks the settings, prepares what the adapter needs (e.g. creates its
    /// directory) and builds the adapter. Called once per target at start-up and
    /// by `config check`; the broker or endpoint is not contacted here.
    fn build(&self) -> Result<Arc<dyn Adapter>, AdapterConfigError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings with one required and one optional path, as adapters have them.
    struct TwoPaths {
        ca: PathBuf,
        key: Option<PathBuf>,
    }

    impl AdapterConfig for TwoPaths {
        fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
            let mut v = vec![&mut self.ca];
            v.extend(self.key.as_mut());
            v
        }

        fn build(&self) -> Result<Arc<dyn Adapter>, AdapterConfigError> {
            Err(AdapterConfigError::new(format!(
                "{} is not a CA",
                self.ca.display()
            )))
        }
    }

    #[test]
    fn relative_paths_follow_the_config_file_absolute_ones_stay() {
        let mut c = TwoPaths {
            ca: "certs/ca.pem".into(),
            key: Some("/etc/ozg/client.key".into()),
        };
        c.resolve_paths(Path::new("/etc/ozg"));
        assert_eq!(c.ca, Path::new("/etc/ozg/certs/ca.pem"));
        assert_eq!(c.key.as_deref(), Some(Path::new("/etc/ozg/client.key")));
    }

    #[test]
    fn a_refusal_says_what_and_what_to_do() {
        let c = TwoPaths {
            ca: "/x/ca.pem".into(),
            key: None,
        };
        let err = c.build().err().expect("refused");
        assert_eq!(err.to_string(), "/x/ca.pem is not a CA");
        assert_eq!(err.fix, GENERIC_FIX);
        let err = err.with_fix("give the CA certificate of the endpoint");
        assert_eq!(err.fix, "give the CA certificate of the endpoint");
    }
}
