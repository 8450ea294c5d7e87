//! The workflow engine inside the controller: one task applies events to
//! triggers and runs (the logic is `volley-flow`'s), commits each batch of
//! changes with the events that caused them, then performs what was decided
//! (start or cancel bursts) through the control plane. See
//! `docs/adr/0004-workflows.md`.

mod engine;
mod outbox;
mod retention;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use volley_proto::api::Burst;
use volley_proto::flow::{
    CloudEvent, Ingested, LoggedEvent, Run, RunRequest, Source, SourceRequest, Timer, TimerRequest, Trigger,
    TriggerRequest, Workflow, WorkflowDefinition,
};

use crate::control_plane::ControlPlane;
use crate::error::{Error, Result};
use crate::store::{Docs, Store};

/// What the engine's task is asked to do; every answer comes once the change is durable.
pub(crate) enum Input {
    /// Events pruned from the log: their ids (`namespace/source/id`) are no longer deduplicated.
    Forget {
        ids: Vec<String>,
    },
    /// Save a step's output held in memory (an asynchronous checkpoint).
    SaveOutput {
        run: String,
        step: String,
    },
    Events {
        namespace: String,
        events: Vec<CloudEvent>,
        done: oneshot::Sender<Result<Ingested>>,
    },
    Deploy {
        namespace: String,
        name: String,
        definition: WorkflowDefinition,
        done: oneshot::Sender<Result<Workflow>>,
    },
    Undeploy {
        namespace: String,
        name: String,
        done: oneshot::Sender<Result<()>>,
    },
    CreateTrigger {
        namespace: String,
        request: TriggerRequest,
        done: oneshot::Sender<Result<Trigger>>,
    },
    DeleteTrigger {
        namespace: String,
        id: String,
        done: oneshot::Sender<Result<()>>,
    },
    CreateTimer {
        namespace: String,
        request: TimerRequest,
        done: oneshot::Sender<Result<Timer>>,
    },
    DeleteTimer {
        namespace: String,
        id: String,
        done: oneshot::Sender<Result<()>>,
    },
    CreateSource {
        namespace: String,
        request: SourceRequest,
        done: oneshot::Sender<Result<Source>>,
    },
    DeleteSource {
        namespace: String,
        id: String,
        done: oneshot::Sender<Result<()>>,
    },
    StartRun {
        namespace: String,
        request: RunRequest,
        done: oneshot::Sender<Result<Run>>,
    },
    CancelRun {
        namespace: String,
        id: String,
        done: oneshot::Sender<Result<Run>>,
    },
    /// A subscription reported `reported` events, or failed with `error`.
    SourceNote {
        key: String,
        reported: u64,
        error: Option<String>,
    },
    /// A burst was saved in a new state (queued, running, or final).
    BurstChanged(Box<Burst>),
    /// An outbox entry was performed.
    Performed {
        id: String,
        outcome: outbox::Outcome,
    },
}

/// The handle the API and the control plane use. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Engine {
    inbox: mpsc::UnboundedSender<Input>,
    store: Store,
    /// Woken whenever a batch that changed runs is committed.
    changed: Arc<Notify>,
}

/// Most events one request may carry.
pub(crate) const MAX_EVENTS: usize = 1000;

/// Longest an API call waits for the engine.
const ANSWER: Duration = Duration::from_secs(30);

/// The engine recovered from the store, not yet running.
pub(crate) struct Recovered {
    state: engine::State,
    rx: mpsc::UnboundedReceiver<Input>,
    ended: mpsc::UnboundedReceiver<Burst>,
}

impl Engine {
    /// Reads the engine's state back from the store and gives the control
    /// plane its handle; nothing is performed until [`Recovered::run`].
    pub(crate) async fn recover(plane: Arc<ControlPlane>, ended: mpsc::UnboundedReceiver<Burst>) -> Result<Recovered> {
        let (inbox, rx) = mpsc::unbounded_channel();
        let changed = Arc::new(Notify::new());
        let state = engine::State::recover(plane.clone(), inbox.clone(), changed.clone()).await?;
        plane.set_flows(Engine { inbox, store: plane.store.clone(), changed });
        Ok(Recovered { state, rx, ended })
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Input) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.inbox.send(make(tx)).map_err(|_| Error::Store("the workflow engine stopped".into()))?;
        match tokio::time::timeout(ANSWER, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Error::Store("the workflow engine stopped".into())),
            Err(_) => Err(Error::Store("the workflow engine did not answer within 30 s".into())),
        }
    }

    /// Logs and applies events of `namespace`; returns once they are durable.
    pub(crate) async fn send(&self, namespace: &str, events: Vec<CloudEvent>) -> Result<Ingested> {
        if events.len() > MAX_EVENTS {
            return Err(Error::TooLarge(format!("send at most {MAX_EVENTS} events at a time, not {}", events.len())));
        }
        for e in &events {
            volley_flow::check_event(e).map_err(|e| match e {
                volley_flow::Error::Unreal { .. } => Error::Unprocessable(e.to_string()),
                e => Error::BadRequest(e.to_string()),
            })?;
        }
        let namespace = namespace.to_string();
        self.ask(|done| Input::Events { namespace, events, done }).await
    }

    pub(crate) async fn deploy(&self, namespace: &str, name: &str, definition: WorkflowDefinition) -> Result<Workflow> {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        self.ask(|done| Input::Deploy { namespace, name, definition, done }).await
    }

    pub(crate) async fn undeploy(&self, namespace: &str, name: &str) -> Result<()> {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        self.ask(|done| Input::Undeploy { namespace, name, done }).await
    }

    pub(crate) async fn start_run(&self, namespace: &str, request: RunRequest) -> Result<Run> {
        let namespace = namespace.to_string();
        self.ask(|done| Input::StartRun { namespace, request, done }).await
    }

    pub(crate) async fn create_trigger(&self, namespace: &str, request: TriggerRequest) -> Result<Trigger> {
        let namespace = namespace.to_string();
        self.ask(|done| Input::CreateTrigger { namespace, request, done }).await
    }

    pub(crate) async fn delete_trigger(&self, namespace: &str, id: &str) -> Result<()> {
        let (namespace, id) = (namespace.to_string(), id.to_string());
        self.ask(|done| Input::DeleteTrigger { namespace, id, done }).await
    }

    pub(crate) async fn create_timer(&self, namespace: &str, request: TimerRequest) -> Result<Timer> {
        let namespace = namespace.to_string();
        self.ask(|done| Input::CreateTimer { namespace, request, done }).await
    }

    pub(crate) async fn delete_timer(&self, namespace: &str, id: &str) -> Result<()> {
        let (namespace, id) = (namespace.to_string(), id.to_string());
        self.ask(|done| Input::DeleteTimer { namespace, id, done }).await
    }

    /// Tells the engine how a subscription is doing (no answer awaited).
    pub(crate) fn note_source(&self, key: &str, reported: u64, error: Option<String>) {
        let _ = self.inbox.send(Input::SourceNote { key: key.into(), reported, error });
    }

    pub(crate) async fn create_source(&self, namespace: &str, request: SourceRequest) -> Result<Source> {
        let namespace = namespace.to_string();
        self.ask(|done| Input::CreateSource { namespace, request, done }).await
    }

    pub(crate) async fn delete_source(&self, namespace: &str, id: &str) -> Result<()> {
        let (namespace, id) = (namespace.to_string(), id.to_string());
        self.ask(|done| Input::DeleteSource { namespace, id, done }).await
    }

    pub(crate) async fn cancel_run(&self, namespace: &str, id: &str) -> Result<Run> {
        let (namespace, id) = (namespace.to_string(), id.to_string());
        self.ask(|done| Input::CancelRun { namespace, id, done }).await
    }
}

/// Reads: from the store, which holds every committed change.
impl Engine {
    pub(crate) async fn workflows(&self, namespace: &str) -> Result<Vec<Workflow>> {
        Ok(self
            .store
            .docs::<Workflow>(Docs::Workflows, &format!("{namespace}/"))
            .await?
            .into_iter()
            .map(|(_, w)| w)
            .collect())
    }

    pub(crate) async fn workflow(&self, namespace: &str, name: &str) -> Result<Workflow> {
        let found = self.store.doc::<Workflow>(Docs::Workflows, &format!("{namespace}/{name}")).await?;
        found.ok_or_else(|| Error::NotFound(format!("no workflow {name:?}; `volley flow list` shows yours")))
    }

    /// Runs newest first, of one workflow if named.
    pub(crate) async fn runs(&self, namespace: &str, workflow: Option<&str>, limit: usize) -> Result<Vec<Run>> {
        let mut runs: Vec<Run> =
            self.store.docs::<Run>(Docs::Runs, &format!("{namespace}/")).await?.into_iter().map(|(_, r)| r).collect();
        runs.retain(|r| workflow.is_none_or(|w| r.workflow == w));
        runs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        runs.truncate(limit);
        Ok(runs)
    }

    pub(crate) async fn run(&self, namespace: &str, id: &str) -> Result<Run> {
        let found = self.store.doc::<Run>(Docs::Runs, &format!("{namespace}/{id}")).await?;
        found.ok_or_else(|| Error::NotFound(format!("no run {id}")))
    }

    /// The run once it has ended, or as it is after `timeout`.
    pub(crate) async fn wait_run(&self, namespace: &str, id: &str, timeout: Duration) -> Result<Run> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            let run = self.run(namespace, id).await?;
            if run.state.is_final() || tokio::time::Instant::now() >= deadline {
                return Ok(run);
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }

    /// Logged events after position `after`, oldest first.
    pub(crate) async fn events(&self, namespace: &str, after: u64, limit: usize) -> Result<Vec<LoggedEvent>> {
        self.store.events(Some(namespace), after, limit).await
    }

    pub(crate) async fn sources(&self, namespace: &str) -> Result<Vec<Source>> {
        let all = self.store.docs::<Source>(Docs::Sources, &format!("{namespace}/")).await?;
        Ok(all.into_iter().map(|(_, s)| s).filter(|s| s.namespace == namespace).collect())
    }

    pub(crate) async fn timers(&self, namespace: &str) -> Result<Vec<Timer>> {
        let all = self.store.docs::<Timer>(Docs::Timers, &format!("{namespace}/")).await?;
        Ok(all.into_iter().map(|(_, t)| t).filter(|t| t.namespace == namespace).collect())
    }

    /// The namespace's triggers (stored by `namespace/id`).
    pub(crate) async fn triggers(&self, namespace: &str) -> Result<Vec<Trigger>> {
        let all = self.store.docs::<Trigger>(Docs::Triggers, &format!("{namespace}/")).await?;
        Ok(all.into_iter().map(|(_, t)| t).filter(|t| t.namespace == namespace).collect())
    }
}

impl Recovered {
    /// Starts the engine's task until `cancel` fires: the outbox is performed
    /// again (idempotently) and every running step is checked against its
    /// burst's stored state.
    pub(crate) fn run(self, cancel: CancellationToken) {
        let Recovered { state, rx, ended } = self;
        tokio::spawn(forward_ends(ended, state.inbox()));
        tokio::spawn(async move {
            tokio::select! {
                _ = state.run(rx, cancel.clone()) => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}

async fn forward_ends(mut ended: mpsc::UnboundedReceiver<Burst>, inbox: mpsc::UnboundedSender<Input>) {
    while let Some(burst) = ended.recv().await {
        if inbox.send(Input::BurstChanged(Box::new(burst))).is_err() {
            return;
        }
    }
}
