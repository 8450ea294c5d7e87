//! What every test tree of the workspace shares: services that are up or
//! skipped (CI=true: required), directories and PostgreSQL schemas of a
//! test's own, the `volley` binary as a platform or as roles, clusters of
//! hosts in network namespaces, and object storage that is cleaned up after.
//!
//! A test depends on it as a dev-dependency and uses what it needs; see
//! `tests/README.md` for which layer tests what.

pub mod fs;
pub mod netns;
pub mod pg;
pub mod platform;
pub mod process;
pub mod services;
#[cfg(feature = "storage")]
pub mod storage;
pub mod wasm;

pub use fs::TempDir;
pub use pg::PgSchema;
pub use platform::{Platform, http, http_as, http_trusting};
pub use process::{
    Role, Server, children_of, descendants_of, eventually, json_ok, processes_with_env, stderr, stdout, volley,
    volley_exe,
};
pub use services::{ci, postgres_up, present, redis_url, service_up};
#[cfg(feature = "storage")]
pub use storage::{list_objects, on_local_dir, on_s3, read_object, remove_all, s3_base, storage, write_object};
