//! Variant calling on Volley (issue 19): the pieces the pipeline is built
//! from, usable on their own. See `docs/notes/genomics.md` for the research
//! they follow.
//!
//! - [`tools`]: the external programs (minimap2, samtools, bcftools, dwgsim),
//!   found on PATH with an error naming the missing one and its Debian
//!   package, run with a timeout and their stderr kept.
//! - [`fastq`]: a FASTQ file cut into chunks at record boundaries by byte
//!   ranges, each chunk's records found and checked without reading the rest
//!   of the file.
//! - [`gz`]: BGZF reads read from the middle through their `.gzi` index;
//!   plain gzip rewritten once as BGZF.
//! - [`data`]: a test case: a reference with repeats, reads simulated at a
//!   coverage, and the truth set of planted variants.
//! - [`job`]: the burst (`genomics`): align, regroup by region, call, merge.
//! - `stages`: the same pipeline as one burst per stage, regrouped through
//!   object storage like the FaaS original (`stage` in the burst's params).
//! - [`regions`]: the genome cut into regions; where an alignment goes.
//! - [`baseline`]: the single-node pipeline (`minimap2 | samtools sort |
//!   bcftools mpileup | bcftools call`), the reference the burst is compared to.
//! - [`accuracy`]: precision and recall of a VCF against the truth set.

pub mod accuracy;
pub mod baseline;
pub mod data;
mod error;
pub mod fastq;
pub mod gz;
pub mod job;
pub mod regions;
pub mod stages;
pub mod tools;

pub use error::Error;
