//! # volley-comm: the communication middleware of Volley bursts
//!
//! The workers of a burst (ranks `0..N`) run in *packs*: the workers of a pack
//! are threads of one process and share its memory; packs reach each other
//! through a *transport* (direct TCP or Unix sockets, or a broker). This crate
//! gives each worker a communicator with point-to-point messages and
//! collectives that take the shortest path available:
//!
//! - inside a pack a message is a [`bytes::Bytes`] handed over without copying;
//! - collectives combine inside the pack first and make one transfer per pack
//!   pair (see [`AsyncComm::all_to_all`]);
//! - every blocking operation has a timeout, and when one worker fails every
//!   other worker's pending operation returns an error naming it.
//!
//! The crate stands alone: a test or a program can start the packs of a burst
//! in one process with [`LocalBurst`], or one pack per process with
//! [`Pack::connect`] and a [`Rendezvous`] that tells packs each other's address.
//!
//! ```
//! use bytes::Bytes;
//! use volley_comm::{Layout, LocalBurst, Op};
//!
//! // 6 workers in packs of 4 and 2, talking over loopback TCP.
//! let burst = LocalBurst::new(Layout::new(&[4, 2])?);
//! let sums = burst.run(|comm| {
//!     // Ring: send to the right neighbour, receive from the left one.
//!     let right = (comm.rank() + 1) % comm.size();
//!     let left = (comm.rank() + comm.size() - 1) % comm.size();
//!     comm.send(right, 7, Bytes::from(vec![comm.rank() as u8]))?;
//!     let got = comm.recv(left, 7)?;
//!     assert_eq!(got[0] as usize, left);
//!     // Everyone gets the sum of all ranks.
//!     let total = comm.all_reduce(&[comm.rank() as u64], Op::Sum)?;
//!     Ok(total[0])
//! })?;
//! assert_eq!(sums, vec![15; 6]);
//! # Ok::<(), volley_comm::Error>(())
//! ```

// Some helpers serve only the broker transports; a build without them leaves those unused.
#![cfg_attr(not(all(feature = "redis", feature = "rabbitmq", feature = "nats", feature = "s3")), allow(dead_code))]
#![warn(missing_docs)]

mod blocking;
mod brokers;
mod collectives;
mod comm;
mod error;
mod layout;
mod local;
mod mailbox;
mod options;
mod pack;
mod pool;
mod reassembly;
pub mod reduce;
mod rendezvous;
mod stats;
mod transport;
mod wait;
mod wire;

pub use blocking::Comm;
pub use brokers::{Brokers, TRANSPORTS, Tuning};
pub use collectives::block_range;
pub use comm::{AsyncComm, RecvRequest, SendRequest};
pub use error::{Error, ErrorKind, Result};
pub use layout::Layout;
pub use local::LocalBurst;
#[cfg(feature = "nats")]
pub use options::NatsOptions;
#[cfg(feature = "rabbitmq")]
pub use options::RabbitMqOptions;
#[cfg(feature = "s3")]
pub use options::S3Options;
pub use options::{PackOptions, StreamOptions, TREE_ABOVE_PACKS, TransportOptions};
#[cfg(feature = "redis")]
pub use options::{RedisMode, RedisOptions};
pub use pack::Pack;
pub use pool::{LargeBuffers, Region, lend_large_buffers};
pub use reduce::{Element, Op};
#[cfg(feature = "redis")]
pub use rendezvous::RedisRendezvous;
pub use rendezvous::{LocalRendezvous, Rendezvous, StaticRendezvous};
pub use stats::CommStats;
/// Bytes a NATS transport's consumer pulls ahead (for plain clients measured beside it).
#[cfg(feature = "nats")]
pub use transport::nats::PULL_BYTES as NATS_PULL_BYTES;
/// Deletes what a burst left on a broker (for a platform cleaning up after packs that died).
pub mod purge {
    #[cfg(feature = "nats")]
    pub use crate::transport::nats::purge as nats;
    #[cfg(feature = "rabbitmq")]
    pub use crate::transport::rabbitmq::purge as rabbitmq;
    #[cfg(feature = "redis")]
    pub use crate::transport::redis::purge as redis;
    #[cfg(feature = "s3")]
    pub use crate::transport::s3::purge as s3;
}
pub use wire::Limits;
