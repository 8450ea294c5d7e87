//! Workflows of bursts: deploy DAGs, start and follow runs, send events.

use std::time::Duration;

use volley_proto::flow::{
    CloudEvent, Events, Ingested, LoggedEvent, Run, RunRequest, Source, SourceRequest, Timer, TimerRequest, Trigger,
    TriggerRequest, Workflow, WorkflowDefinition, WorkflowKind,
};

use crate::{CALL_TIMEOUT, Client, Error, paths};

/// The longest one wait call asks the controller to wait.
const MAX_WAIT: Duration = Duration::from_secs(25);

impl Client {
    /// Deploys (or replaces) workflow `name`: a DAG (YAML or JSON) or a state
    /// machine (Amazon States Language) by `kind`.
    pub async fn deploy_workflow(
        &self,
        name: &str,
        kind: WorkflowKind,
        source: &str,
        description: &str,
    ) -> Result<Workflow, Error> {
        let definition = WorkflowDefinition { kind, source: source.into(), description: description.into() };
        self.json(self.request(reqwest::Method::PUT, &paths::workflow(name), CALL_TIMEOUT).json(&definition)).await
    }

    /// Your deployed workflows.
    pub async fn workflows(&self) -> Result<Vec<Workflow>, Error> {
        self.json(self.get(paths::WORKFLOWS)).await
    }

    pub async fn workflow(&self, name: &str) -> Result<Workflow, Error> {
        self.json(self.get(&paths::workflow(name))).await
    }

    /// Removes a workflow none of whose runs is going.
    pub async fn delete_workflow(&self, name: &str) -> Result<(), Error> {
        self.send(self.request(reqwest::Method::DELETE, &paths::workflow(name), CALL_TIMEOUT)).await.map(drop)
    }

    /// Starts a run of `workflow` with `input`.
    pub async fn start_run(&self, workflow: &str, input: serde_json::Value) -> Result<Run, Error> {
        self.json(self.post(paths::RUNS).json(&RunRequest { workflow: workflow.into(), input })).await
    }

    /// Your runs, newest first, of one workflow if named.
    pub async fn runs(&self, workflow: Option<&str>, limit: usize) -> Result<Vec<Run>, Error> {
        let mut req = self.get(paths::RUNS).query(&[("limit", limit)]);
        if let Some(w) = workflow {
            req = req.query(&[("workflow", w)]);
        }
        self.json(req).await
    }

    pub async fn run(&self, id: &str) -> Result<Run, Error> {
        self.json(self.get(&paths::run(id))).await
    }

    /// The run once it has ended, or as it is after `wait` (at most 25 s per call).
    pub async fn wait_run(&self, id: &str, wait: Duration) -> Result<Run, Error> {
        let wait = wait.min(MAX_WAIT);
        let req = self
            .request(reqwest::Method::GET, &paths::run_wait(id), wait + CALL_TIMEOUT)
            .query(&[("timeout_ms", wait.as_millis() as u64)]);
        self.json(req).await
    }

    /// Waits (up to `limit`) until the run has ended, and returns it, whatever its ending.
    pub async fn wait_run_until_final(&self, id: &str, limit: Duration) -> Result<Run, Error> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let run = self.wait_run(id, left).await?;
            if run.state.is_final() || left.is_zero() {
                return Ok(run);
            }
        }
    }

    pub async fn cancel_run(&self, id: &str) -> Result<Run, Error> {
        self.json(self.post(&paths::run_cancel(id))).await
    }

    /// Sends events; they are durable when this returns.
    pub async fn send_events(&self, events: Vec<CloudEvent>) -> Result<Ingested, Error> {
        self.json(self.post(paths::EVENTS).json(&Events::Many(events))).await
    }

    /// Logged events after position `after`, oldest first.
    pub async fn events(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>, Error> {
        self.json(self.get(paths::EVENTS).query(&[("after", after as usize), ("limit", limit)])).await
    }

    pub async fn triggers(&self) -> Result<Vec<Trigger>, Error> {
        self.json(self.get(paths::TRIGGERS)).await
    }

    /// Makes a trigger of your own.
    pub async fn create_trigger(&self, request: &TriggerRequest) -> Result<Trigger, Error> {
        self.json(self.post(paths::TRIGGERS).json(request)).await
    }

    /// Makes a timer.
    pub async fn create_timer(&self, request: &TimerRequest) -> Result<Timer, Error> {
        self.json(self.post(paths::TIMERS).json(request)).await
    }

    pub async fn timers(&self) -> Result<Vec<Timer>, Error> {
        self.json(self.get(paths::TIMERS)).await
    }

    pub async fn delete_timer(&self, id: &str) -> Result<(), Error> {
        self.send(self.request(reqwest::Method::DELETE, &paths::timer(id), CALL_TIMEOUT)).await.map(drop)
    }

    /// Watches a storage prefix for new objects.
    pub async fn create_source(&self, request: &SourceRequest) -> Result<Source, Error> {
        self.json(self.post(paths::SOURCES).json(request)).await
    }

    pub async fn sources(&self) -> Result<Vec<Source>, Error> {
        self.json(self.get(paths::SOURCES)).await
    }

    pub async fn delete_source(&self, id: &str) -> Result<(), Error> {
        self.send(self.request(reqwest::Method::DELETE, &paths::source(id), CALL_TIMEOUT)).await.map(drop)
    }

    pub async fn delete_trigger(&self, id: &str) -> Result<(), Error> {
        self.send(self.request(reqwest::Method::DELETE, &paths::trigger(id), CALL_TIMEOUT)).await.map(drop)
    }
}
