//! `volley bursts list|show|logs|cancel` and `volley functions list`.

use clap::Subcommand;

use super::{Output, Target, show};

#[derive(Subcommand)]
pub enum Bursts {
    /// The newest bursts.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One burst with every worker's result.
    Show { id: String },
    /// What the burst's pack processes printed (`--rank N`: one worker's tagged lines).
    Logs {
        id: String,
        #[arg(long)]
        rank: Option<usize>,
    },
    /// Stop a burst (queued or running).
    Cancel { id: String },
}

#[derive(Subcommand)]
pub enum Functions {
    /// The functions bursts can run.
    List,
    /// Delete a deployed function.
    Delete { name: String },
}

/// `volley deploy NAME PATH`: upload a function binary built with the Volley SDK.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// The name bursts will run it by.
    name: String,
    /// The binary (e.g. target/release/my-function).
    path: std::path::PathBuf,
    #[arg(long, default_value = "")]
    description: String,
}

impl DeployArgs {
    pub fn run(self, target: &Target, output: Output) -> anyhow::Result<()> {
        let client = target.client()?;
        let binary =
            std::fs::read(&self.path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", self.path.display()))?;
        let info = block_on(async { Ok(client.deploy(&self.name, &self.description, binary).await?) })?;
        if output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&info)?);
        } else {
            println!(
                "deployed {} ({} bytes, sha256 {})",
                info.name,
                info.size_bytes.unwrap_or(0),
                info.digest.as_deref().unwrap_or("-")
            );
        }
        Ok(())
    }
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f)
}

impl Bursts {
    pub fn run(self, target: &Target, output: Output) -> anyhow::Result<()> {
        let client = target.client()?;
        block_on(async {
            match self {
                Bursts::List { limit } => show::list(&client.list(limit).await?[..], output),
                Bursts::Show { id } => show::burst(&client.burst(&id).await?, output),
                Bursts::Cancel { id } => {
                    let burst = client.cancel(&id).await?;
                    eprintln!("cancelling burst {} ({})", burst.id, burst.state.name());
                    Ok(())
                }
                Bursts::Logs { id, rank } => {
                    let logs = client.logs(&id, rank).await?;
                    if output == Output::Json {
                        println!("{}", serde_json::to_string_pretty(&logs)?);
                        return Ok(());
                    }
                    for p in logs.packs {
                        let cut = if p.truncated { " (truncated: only the end is kept)" } else { "" };
                        println!("== pack {} stdout{cut} ==\n{}", p.pack, p.stdout);
                        println!("== pack {} stderr ==\n{}", p.pack, p.stderr);
                    }
                    Ok(())
                }
            }
        })
    }
}

impl Functions {
    pub fn run(self, target: &Target, output: Output) -> anyhow::Result<()> {
        if let Functions::Delete { name } = &self {
            let client = target.client()?;
            block_on(async { Ok(client.delete_function(name).await?) })?;
            eprintln!("deleted {name}");
            return Ok(());
        }
        let list = match &target.controller {
            Some(_) => block_on(async { Ok(target.client()?.functions().await?) })?,
            None => super::roles::builtin_functions(),
        };
        if output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&list)?);
        } else {
            for f in list {
                println!("{:<12} {:<9} {}", f.name, f.kind, f.description);
            }
        }
        Ok(())
    }
}
