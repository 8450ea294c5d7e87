//! The genomics job of `volley bench network`: variant calling in burst mode
//! (one pack per host, the alignments regrouped by one all_to_all between
//! packs) and as the FaaS original's stages (one worker per pack, regrouped
//! through object storage), with the case and the calls on an S3 server on
//! the broker host, so that every storage round trip crosses the links.

use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use volley_bench::jobs::genomics::{self, BURST, Place};
use volley_genomics::data::{Case, Spec};
use volley_storage::Storage;

use super::{Cluster, NetworkArgs, Row, until_interrupted};
use volley_bench::network::Network;

/// The bucket (a folder of the S3 server's directory) the job works in.
const BUCKET: &str = "genomics";

/// Both modes on `cluster`, after a burst that builds the reference's index
/// (not measured: both modes then find it in the invokers' caches); each
/// call set must hold the single-node pipeline's records.
pub(super) fn measure(net: &Network, cluster: &Cluster, args: &NetworkArgs, dir: &Path) -> anyhow::Result<Vec<Row>> {
    let s3 = cluster.s3.as_ref().context("the genomics job's cluster has no S3 server")?;
    let case = match &args.genomics_case {
        Some(given) => Case::in_dir(given),
        None => {
            let contigs = (1..=4).map(|i| (format!("chr{i}"), args.genomics_length / 4)).collect();
            let spec = Spec { contigs, coverage: 20.0, ..Default::default() };
            volley_genomics::data::generate(&dir.join("case"), &spec).context("generating the genomics case")?
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (single, single_vcf) = genomics::single_node(&case, &dir.join("single"), threads)?;
    eprintln!("genomics single node ({threads} threads, for the records to match): {:.1} s", single.total_ms / 1e3);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = volley_client::Client::with_ca(&cluster.url, Some(&cluster.key), None)?;
    let bucket = format!("s3://{BUCKET}");
    std::fs::create_dir_all(s3.root.join(BUCKET))?;
    let place = |output: &str| Place {
        reference: format!("{bucket}/case/reference.fa"),
        reads: [format!("{bucket}/case/reads_1.fq"), format!("{bucket}/case/reads_2.fq")],
        output: format!("{bucket}/{output}"),
        local_output: s3.root.join(BUCKET).join(output),
    };
    let workers = args.genomics_workers;
    let shape = (workers, workers / args.hosts);
    let work = async {
        // Uploaded, not copied into the server's directory: the server then
        // knows each object's checksum instead of hashing it on every read.
        let inputs = Storage::open(&format!("{bucket}/case"), &s3.options())?;
        for (name, file) in
            [("reference.fa", &case.reference), ("reads_1.fq", &case.reads[0]), ("reads_2.fq", &case.reads[1])]
        {
            let data = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            inputs.put(name, Bytes::from(data)).await?;
        }
        genomics::burst(&client, "burst, indexing", shape, (&case, &place("indexing")), &single_vcf)
            .await
            .context("the burst that builds the index")?;
        let regroup = |row: &genomics::Row| {
            let stages: Vec<String> = row.stages.iter().map(|(name, ms)| format!("{name} {:.2}", ms / 1e3)).collect();
            eprintln!("genomics {} stages (slowest worker, s): {}", row.mode, stages.join(", "));
            row.stages.iter().filter(|(name, _)| name == "shuffle" || name == "regroup").map(|(_, ms)| ms).sum()
        };
        let before = net.traffic()?;
        let burst = genomics::burst(&client, BURST, shape, (&case, &place("burst")), &single_vcf)
            .await
            .context("genomics in burst mode")?;
        let burst = Row::measured(
            net,
            "genomics",
            ("burst", workers, shape.1),
            (burst.total_ms, Some(regroup(&burst))),
            &before,
        )?;
        let before = net.traffic()?;
        let faas = genomics::faas_style(&client, workers, (&case, &place("faas")), &single_vcf)
            .await
            .context("genomics as FaaS-style stages")?;
        let faas =
            Row::measured(net, "genomics", ("faas", workers, 1), (faas.total_ms, Some(regroup(&faas))), &before)?;
        anyhow::Ok(vec![burst, faas])
    };
    until_interrupted(&runtime, work)
}
