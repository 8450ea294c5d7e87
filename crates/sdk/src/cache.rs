//! [`Worker::cached`]: files made once per content (a reference genome's
//! index) and kept by the invoker for the later packs of the burst's
//! namespace on that machine (ADR 0013). Within a pack the workers share
//! one lookup: the first asks (and makes the files if the invoker has none),
//! the others wait for it and get the same directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use volley_proto::pack::FromPack;

use crate::{Worker, WorkerError};

/// How long the invoker may take to answer (it links or opens files, never copies first).
const ANSWER_LIMIT: Duration = Duration::from_secs(60);

/// A directory of cached files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// Where the files are: read-only, this pack's until it ends.
    pub dir: PathBuf,
    /// Whether this pack made them (the invoker had no such entry).
    pub made: bool,
}

/// The pack's entries, by key: one lookup per key per pack (process).
type Slots = Mutex<HashMap<String, Arc<Mutex<Option<Cached>>>>>;

fn slots() -> &'static Slots {
    static SLOTS: std::sync::OnceLock<Slots> = std::sync::OnceLock::new();
    SLOTS.get_or_init(Slots::default)
}

/// Directories this pack made, removed when it ends ([`clean_up`]).
fn made_dirs() -> &'static Mutex<Vec<PathBuf>> {
    static MADE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    &MADE
}

/// Removes the directories this pack made for the cache (the invoker holds
/// copies) and forgets the pack's lookups (their views go with the pack).
pub(crate) fn clean_up() {
    slots().lock().unwrap_or_else(|p| p.into_inner()).clear();
    for dir in made_dirs().lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Worker {
    /// The files cached under `key` for this burst's namespace on this
    /// machine, made by `make` (into the empty directory it is given) when
    /// there are none yet; the invoker then keeps them for later packs.
    ///
    /// `key` must name the content exactly (a digest of what the files are
    /// made from and of how): 1 to 128 letters, digits, `.`, `_` or `-`.
    /// Outside an invoker (a test), or when the invoker cannot keep them, the
    /// files are made and used all the same.
    pub fn cached<E>(&self, key: &str, make: impl FnOnce(&Path) -> Result<(), E>) -> Result<Cached, WorkerError>
    where
        E: Into<WorkerError>,
    {
        volley_proto::pack::check_cache_name("cache key", key)?;
        let slot = slots().lock().unwrap_or_else(|p| p.into_inner()).entry(key.to_string()).or_default().clone();
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cached) = slot.as_ref() {
            return Ok(Cached { dir: cached.dir.clone(), made: false });
        }
        if let Some(dir) = self.cache_open(key) {
            let cached = Cached { dir, made: false };
            *slot = Some(cached.clone());
            return Ok(cached);
        }
        let dir = std::env::temp_dir().join(format!("volley-cache-{key}-{:08x}", rand_u32()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        made_dirs().lock().unwrap_or_else(|p| p.into_inner()).push(dir.clone());
        make(&dir).map_err(Into::into)?;
        self.cache_keep(key, &dir);
        let cached = Cached { dir, made: true };
        *slot = Some(cached.clone());
        Ok(cached)
    }

    /// The invoker's entry, if it has one (a failed lookup is logged and counts as none).
    fn cache_open(&self, key: &str) -> Option<PathBuf> {
        let control = self.control()?;
        let ask = control.ask(|request| FromPack::CacheOpen { request, key: key.to_string() }, ANSWER_LIMIT);
        match self.block_on(ask) {
            Ok(answer) => {
                if let Some(error) = answer.error {
                    self.log(format!("the cache could not be read ({error}); making the files"));
                }
                answer.dir.map(PathBuf::from)
            }
            Err(e) => {
                self.log(format!("the cache could not be read ({e}); making the files"));
                None
            }
        }
    }

    /// Offers `dir` to the invoker as the entry `key` (a refusal is logged: the files are used all the same).
    fn cache_keep(&self, key: &str, dir: &Path) {
        let Some(control) = self.control() else { return };
        let dir_name = dir.display().to_string();
        let ask =
            control.ask(|request| FromPack::CacheKeep { request, key: key.to_string(), dir: dir_name }, ANSWER_LIMIT);
        let error = match self.block_on(ask) {
            Ok(answer) => answer.error,
            Err(e) => Some(e.to_string()),
        };
        if let Some(error) = error {
            self.log(format!("the invoker did not keep the files of {key:?}: {error}"));
        }
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}
