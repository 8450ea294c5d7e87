//! The functions a binary can run, by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::worker::{Worker, WorkerResult};

/// A function: runs on every worker of a burst.
pub type Function = Arc<dyn Fn(&Worker) -> WorkerResult + Send + Sync>;

/// The functions one binary serves, by name.
#[derive(Clone, Default)]
pub struct Functions {
    entries: BTreeMap<String, (Function, String)>,
}

impl Functions {
    /// No functions yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `function` as `name` (a later add of the same name replaces it).
    pub fn add<F>(&mut self, name: &str, description: &str, function: F) -> &mut Self
    where
        F: Fn(&Worker) -> WorkerResult + Send + Sync + 'static,
    {
        self.entries.insert(name.to_string(), (Arc::new(function), description.to_string()));
        self
    }

    /// The function called `name`.
    pub fn get(&self, name: &str) -> Option<Function> {
        self.entries.get(name).map(|(f, _)| f.clone())
    }

    /// Every name with its description, in name order.
    pub fn list(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(name, (_, description))| (name.as_str(), description.as_str()))
    }

    /// Every name, in name order.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }
}
