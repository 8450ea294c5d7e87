//! The embedded platform: a controller and an invoker in this process
//! (`volley up`, and `volley run` or the benchmarks without a controller).

use std::path::Path;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::roles::{BrokerArgs, ControlPlaneArgs, InvokerArgs};

/// Everything an embedded platform needs: brokers, controller and invoker settings.
#[derive(Args, Clone)]
pub struct PlatformArgs {
    #[command(flatten)]
    pub brokers: BrokerArgs,
    #[command(flatten)]
    pub controller: ControlPlaneArgs,
    #[command(flatten)]
    pub invoker: InvokerArgs,
}

impl PlatformArgs {
    /// Lets an embedded platform's sandboxed packs use `url` when it is local
    /// (`file://`) storage: the directory is made and granted to them.
    pub fn grant_local_storage(&mut self, url: &str) -> anyhow::Result<()> {
        if let Some(path) = url.strip_prefix("file://") {
            let dir = std::path::PathBuf::from(path.trim_end_matches('/'));
            std::fs::create_dir_all(&dir)
                .map_err(|e| anyhow::anyhow!("cannot make the local storage directory {}: {e}", dir.display()))?;
            self.invoker.local_storage.push(std::path::absolute(dir)?);
        }
        Ok(())
    }
}

/// Runs `work` (given the controller's URL) against a fresh embedded platform
/// whose data lives in a temporary directory; the platform is stopped and the
/// directory removed afterwards, whatever `work` returned.
pub async fn with_platform<T, F, Fut>(args: &PlatformArgs, work: F) -> anyhow::Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let dir = std::env::temp_dir().join(format!("volley-embedded-{:08x}", rand::random::<u32>()));
    // The cache outlives this platform: a later run finds the index it made.
    let mut args = args.clone();
    if args.invoker.cache_dir.is_none() {
        args.invoker.cache_dir = Some(super::roles::default_data_dir().join("cache"));
    }
    let result = match Embedded::start("127.0.0.1:0", &dir, &args).await {
        Ok(platform) => {
            let result = work(platform.url().to_string()).await;
            platform.stop().await;
            result
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A controller and one invoker running in this process.
pub struct Embedded {
    controller: volley_controller::Handle,
    invoker: volley_invoker::Handle,
}

impl Embedded {
    /// Starts both roles; returns once the invoker has registered.
    pub async fn start(listen: &str, data_dir: &Path, args: &PlatformArgs) -> anyhow::Result<Embedded> {
        let opts = args.controller.options(listen, data_dir, &args.brokers)?;
        let token = opts.invoker_token.clone();
        let controller = opts.build().await?.run(CancellationToken::new());
        controller.ready().await?;
        let invoker = args.invoker.options(controller.url(), data_dir, token)?.build()?.run(CancellationToken::new());
        match tokio::time::timeout(Duration::from_secs(10), invoker.ready()).await {
            Ok(Ok(_)) => Ok(Embedded { controller, invoker }),
            failed => {
                invoker.stop().await;
                let _ = controller.stop().await;
                match failed {
                    Ok(Err(e)) => Err(e.into()),
                    _ => anyhow::bail!("the embedded invoker did not register within 10 s"),
                }
            }
        }
    }

    /// The controller's URL.
    pub fn url(&self) -> &str {
        self.controller.url()
    }

    /// Stops both roles: the invoker first (it stops its packs and reports their
    /// end), then the controller.
    pub async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(15), self.invoker.stop()).await;
        let _ = tokio::time::timeout(Duration::from_secs(15), self.controller.stop()).await;
    }
}
