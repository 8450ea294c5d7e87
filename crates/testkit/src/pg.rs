//! PostgreSQL schemas of a test's own.

use std::process::Command;

use crate::fs::rand_u32;

/// A PostgreSQL schema of the test's own in database `test` (made with psql),
/// dropped when the guard goes, so tests never see each other's tables.
pub struct PgSchema {
    name: String,
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

impl PgSchema {
    pub fn new(prefix: &str) -> PgSchema {
        let name = format!("{prefix}_{}_{:x}", std::process::id(), rand_u32());
        psql(&format!("CREATE SCHEMA {name}"));
        PgSchema { name }
    }

    /// A store URL whose tables live in this schema.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{}", self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-c",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            ])
            .output();
    }
}
