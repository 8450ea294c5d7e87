//! Confinement of pack processes (issue 15). So far: a cgroup per pack, on
//! the machine's cgroup v1 controllers or a cgroup v2 tree, which holds the
//! pack to its burst's memory (a hard limit), a number of processes (a fork
//! bomb stops there) and a CPU weight by slots, and says afterwards whether
//! the pack was killed for memory, so that the burst's error can name the
//! limit instead of a bare SIGKILL; a Landlock ruleset of the paths a pack
//! may reach (and no signals or abstract sockets outside it); and a seccomp
//! filter of the system calls a function never needs; cells (a uid and a
//! directory per sandboxed pack process, unique on the machine), ACL grants
//! between the cells of one burst, and the launcher that puts it all
//! together, `volley sandbox-exec` (ADR 0008 has the whole design).

pub mod acl;
mod cell;
mod cgroup;
mod cover;
mod landlock;
pub mod launch;
mod refusals;
mod seccomp;

pub use cell::{CELLS, Cell, CellError, FIRST_UID, PACKS_GID};
pub use cgroup::{Cgroup, Error, Layout, Limits, Usage, own_memory};
pub use landlock::{Confinement, LandlockError, Paths};
pub use refusals::Refusals;
pub use seccomp::{Filter, FilterError, refused_name};
