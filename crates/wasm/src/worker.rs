//! What a function gets: its place in the burst, its parameters, its
//! communicator and object storage.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::comm::Comm;
use crate::{Error, sys};

/// One worker's context.
#[derive(Debug)]
pub struct Worker {
    comm: Comm,
    function: usize,
    attempt: u32,
    params: Value,
    own: Value,
    burst: String,
    idempotency_key: Option<String>,
}

fn text(which: i32) -> Result<String, Error> {
    // SAFETY: no memory passed; the reply waits for `take`.
    sys::status(unsafe { sys::params(which) })?;
    String::from_utf8(sys::take(0)).map_err(|_| Error::new("the host passed parameters that are not UTF-8"))
}

impl Worker {
    /// The worker this thread serves (asked of the host once, when the thread starts).
    pub(crate) fn current() -> Result<Worker, Error> {
        let mut info = [0u32; 7];
        // SAFETY: the host writes seven words into `info`.
        sys::status(unsafe { sys::info(info.as_mut_ptr()) })?;
        let [rank, size, pack, first, len, function, attempt] = info.map(|v| v as usize);
        let key = text(3)?;
        Ok(Worker {
            comm: Comm::new(rank, size, pack, first..first + len),
            function,
            attempt: attempt as u32,
            params: serde_json::from_str(&text(0)?)?,
            own: serde_json::from_str(&text(1)?)?,
            burst: text(2)?,
            idempotency_key: (!key.is_empty()).then_some(key),
        })
    }

    pub(crate) fn function(&self) -> usize {
        self.function
    }

    /// This worker's rank, 0..size.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// The number of workers in the burst.
    pub fn size(&self) -> usize {
        self.comm.size()
    }

    /// The index of this worker's pack (the workers sharing this module's memory).
    pub fn pack(&self) -> usize {
        self.comm.pack()
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

    /// The shared parameters read into `T` (a missing object reads as `{}`).
    pub fn params_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let value = if self.params.is_null() { Value::Object(Default::default()) } else { self.params.clone() };
        serde_json::from_value(value).map_err(|e| Error::new(format!("bad params: {e}")))
    }

    /// The burst's id.
    pub fn burst_id(&self) -> &str {
        &self.burst
    }

    /// Which attempt of the burst this is: 1, or more when a failed burst is retried.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The burst's idempotency key, if it was submitted with one.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// Writes one line to the pack's log, tagged with this worker's rank.
    pub fn log(&self, message: impl std::fmt::Display) {
        let line = message.to_string();
        // SAFETY: the host reads `line` during the call.
        unsafe { sys::log(line.as_ptr(), line.len()) }
    }

    /// The object `key` under `url` (`file:///dir` or `s3://bucket/prefix`),
    /// read by the host with the pack's credentials.
    pub fn storage_get(&self, url: &str, key: &str) -> Result<Vec<u8>, Error> {
        // SAFETY: the host reads the strings during the call.
        sys::status(unsafe { sys::storage_get(url.as_ptr(), url.len(), key.as_ptr(), key.len()) })?;
        Ok(sys::take(0))
    }

    /// Writes `data` as the object `key` under `url`.
    pub fn storage_put(&self, url: &str, key: &str, data: &[u8]) -> Result<(), Error> {
        // SAFETY: the host reads the strings and `data` during the call.
        let status =
            unsafe { sys::storage_put(url.as_ptr(), url.len(), key.as_ptr(), key.len(), data.as_ptr(), data.len()) };
        sys::status(status).map(drop)
    }
}
