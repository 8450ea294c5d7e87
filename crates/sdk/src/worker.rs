//! What a function gets: its place in the burst, its communicator and its parameters.

use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde_json::Value;
use volley_comm::Comm;
use volley_proto::api::{MAX_PHASES, Phase};
use volley_proto::pack::FromPack;
use volley_storage::{Storage, StorageOptions, WriteNotice};

/// Any error a function returns; its message becomes the worker's error.
pub type WorkerError = Box<dyn std::error::Error + Send + Sync>;

/// What a function returns: a JSON result or an error.
pub type WorkerResult = Result<Value, WorkerError>;

/// One worker's context.
pub struct Worker {
    comm: Comm,
    burst: Arc<str>,
    params: Arc<Value>,
    own: Value,
    runtime: tokio::runtime::Handle,
    storage: Arc<StorageOptions>,
    /// Tells the invoker where this pack writes local files (see `runtime.rs`).
    write_notice: Option<WriteNotice>,
    attempt: u32,
    idempotency_key: Option<String>,
    /// The phases marked so far (reported with the result).
    phases: Mutex<Vec<Phase>>,
    /// The line to the invoker: each phase is also sent as it is marked.
    control: Option<crate::control::Control>,
}

impl Worker {
    pub(crate) fn new(
        comm: Comm,
        burst: Arc<str>,
        params: Arc<Value>,
        own: Value,
        runtime: tokio::runtime::Handle,
        storage: Arc<StorageOptions>,
    ) -> Self {
        Worker {
            comm,
            burst,
            params,
            own,
            runtime,
            storage,
            write_notice: None,
            attempt: 1,
            idempotency_key: None,
            phases: Mutex::default(),
            control: None,
        }
    }

    pub(crate) fn with_control(mut self, control: crate::control::Control) -> Self {
        self.control = Some(control);
        self
    }

    /// The line to the invoker (None outside a pack: a test's worker).
    pub(crate) fn control(&self) -> Option<&crate::control::Control> {
        self.control.as_ref()
    }

    pub(crate) fn with_write_notice(mut self, notice: WriteNotice) -> Self {
        self.write_notice = Some(notice);
        self
    }

    pub(crate) fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    pub(crate) fn with_idempotency_key(mut self, key: Option<String>) -> Self {
        self.idempotency_key = key;
        self
    }

    /// The burst's idempotency key, if it was submitted with one: a workflow
    /// step's (`run/RUN/STEP/ATTEMPT`) is the same however often the engine
    /// starts it, so a function can key its own side effects by it.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// Which attempt of the burst this is: 1, or more when a failed burst is retried.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Object storage at `url` (`file:///dir` or `s3://bucket/prefix`), with the
    /// platform's credentials. Its calls are async: run them with [`Worker::block_on`].
    pub fn storage(&self, url: &str) -> Result<Storage, WorkerError> {
        let storage = Storage::open(url, &self.storage)?;
        Ok(match &self.write_notice {
            Some(notice) => storage.with_write_notice(notice.clone()),
            None => storage,
        })
    }

    /// How this pack reaches object storage (endpoint and credentials, which
    /// the platform hands only to bursts whose parameters name `s3://`).
    pub fn storage_options(&self) -> &StorageOptions {
        &self.storage
    }

    /// Runs a future (a storage call, say) to completion on the pack's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The pack's async runtime.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// This worker's rank, 0..size.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// The number of workers in the burst.
    pub fn size(&self) -> usize {
        self.comm.size()
    }

    /// The index of this worker's pack (the workers sharing its process).
    pub fn pack(&self) -> usize {
        self.comm.pack()
    }

    /// The burst's id.
    pub fn burst_id(&self) -> &str {
        &self.burst
    }

    /// The communicator: messages and collectives with the other workers.
    pub fn comm(&self) -> &Comm {
        &self.comm
    }

    /// The parameters every worker of the burst received.
    pub fn params(&self) -> &Value {
        &self.params
    }

    /// The parameters given to this worker alone (`Null` if none).
    pub fn worker_params(&self) -> &Value {
        &self.own
    }

    /// The shared parameters read into `T`, with an error that says what is wrong.
    pub fn params_as<T: DeserializeOwned>(&self) -> Result<T, WorkerError> {
        // A missing params object reads as an empty one, so types with defaults work.
        let value = if self.params.is_null() { Value::Object(Default::default()) } else { (*self.params).clone() };
        serde_json::from_value(value).map_err(|e| format!("bad params: {e}").into())
    }

    /// Writes one line to the pack's log, tagged with this worker's rank
    /// (`[rank N] ...`), so `volley bursts logs ID --rank N` finds it.
    pub fn log(&self, message: impl std::fmt::Display) {
        use std::io::Write as _;
        let line = format!("[rank {}] {message}\n", self.rank());
        // One write per line: lines of different workers do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    /// Marks the start of a named phase of the function (`read`, `shuffle`,
    /// `write`): it lasts until the next mark, the last one until the worker
    /// finishes. Each mark is sent as it is made (the dashboard draws it while
    /// the burst runs) and all of them again with the result.
    /// Marks past the 64th are dropped.
    pub fn phase(&self, name: &str) {
        let mut phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        if phases.len() < MAX_PHASES {
            let phase = Phase { name: name.to_string(), at: volley_proto::now_micros() };
            if let Some(control) = &self.control {
                control.send(FromPack::WorkerPhase { rank: self.rank(), phase: phase.clone() });
            }
            phases.push(phase);
        }
    }

    /// The phases marked so far, handed over once (with the result).
    pub(crate) fn take_phases(&self) -> Vec<Phase> {
        std::mem::take(&mut *self.phases.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The host this worker runs on.
    pub fn host(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    }
}
