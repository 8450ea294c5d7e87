//! What a pack may reach on the filesystem, and whom it may signal or reach
//! through an abstract Unix socket, enforced by Landlock (ABI 6 or later
//! required: a kernel without the signal and socket scopes is refused, not
//! half-sandboxed). Paths are read (and executed) or written beneath the
//! directories given, nothing else; signals and abstract sockets reach only
//! processes of the same Landlock domain, so the pack's own children (the
//! Python fork server and its workers) and nobody else.
//!
//! Before Landlock ABI 9 (Linux 7.1) connecting to a pathname Unix socket is
//! not a filesystem access Landlock can refuse: ADR 0008 says what guards them.

use std::io;
use std::path::PathBuf;

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope,
    path_beneath_rules,
};

/// The ABI whose rights and scopes are asked for (and required).
const ABI_NEEDED: ABI = ABI::V6;

/// The directories (or files) a pack may read and execute, and those it may also write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paths {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot confine packs with Landlock (Linux 6.12 or later needed): {0}")]
pub struct LandlockError(String);

/// A Landlock ruleset made ahead, to be enforced on a child between fork and exec.
#[derive(Debug)]
pub struct Confinement {
    ruleset: Option<RulesetCreated>,
}

impl Confinement {
    /// The ruleset for `paths` (those that do not exist are left out).
    pub fn new(paths: &Paths) -> Result<Confinement, LandlockError> {
        let error = |e: landlock::RulesetError| LandlockError(e.to_string());
        let ruleset = landlock::Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(ABI_NEEDED))
            .map_err(error)?
            .scope(Scope::from_all(ABI_NEEDED))
            .map_err(error)?
            .create()
            .map_err(error)?
            .add_rules(path_beneath_rules(&paths.read, AccessFs::from_read(ABI_NEEDED)))
            .map_err(error)?
            .add_rules(path_beneath_rules(&paths.write, AccessFs::from_all(ABI_NEEDED)))
            .map_err(error)?;
        Ok(Confinement { ruleset: Some(ruleset) })
    }

    /// Enforces the ruleset on the calling process (and what it execs and
    /// forks from then on); sets no-new-privileges. Once only.
    pub fn enforce(&mut self) -> io::Result<()> {
        let ruleset =
            self.ruleset.take().ok_or_else(|| io::Error::other("the Landlock ruleset was enforced already"))?;
        ruleset.restrict_self().map(|_| ()).map_err(io::Error::other)
    }
}
