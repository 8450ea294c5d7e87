//! TeraSort: the sort benchmark on the gensort record layout, as a burst.

pub mod data;
mod job;
pub mod records;
pub mod splitters;

pub use job::terasort;
