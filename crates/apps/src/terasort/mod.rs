//! TeraSort: the sort benchmark on the gensort record layout, as a burst.

pub mod data;
mod job;
pub mod records;
pub mod splitters;
mod steps;

pub use job::terasort;
pub use steps::{teragen, teravalidate};
