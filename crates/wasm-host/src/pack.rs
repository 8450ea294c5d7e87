//! One WebAssembly pack process: one engine, the module loaded from its
//! compiled artefact, ONE shared memory for the pack's workers, and one
//! instance per guest thread.
//!
//! The module's `main` (the guest SDK's `volley_wasm::main!`) says hello (its
//! function names), runs its start-up, makes the thread that will start the
//! workers (the *starter*: `pthread_create` → `wasi.thread-spawn`, which the
//! host records without running it) and says it is ready; a process started
//! from the invoker's snapshot of that moment ([`crate::snapshot`]) skips all
//! of this. When the pack is assigned, the SDK's runtime connects it and
//! calls [`Pack::run_worker`] on each worker's thread; the first call runs the
//! starter, which starts one guest thread per worker. Each such start is
//! handed to a waiting worker thread, which instantiates the module in a store
//! of its own over the shared memory and runs the guest thread there: the
//! function runs on the worker's own thread with the worker's communicator.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use volley_sdk::{Worker, WorkerResult};
use wasmtime::{Engine, ExternType, InstancePre, Linker, SharedMemory, Store};

use crate::Error;
use crate::engine;
use crate::host::{self, Host, Role, WorkerRef};
use crate::snapshot::{self, Snapshot};

/// Who asks for a new guest thread.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spawner {
    Main,
    Starter,
    Other,
}

/// How long the guest's main may take to say hello (its start-up code).
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);
/// The least a worker waits for its guest thread to be started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// After a guest thread trapped, how long the others get to end before the
/// process ends them (a thread parked on a lock the trapped one held would
/// never wake: wasm's atomic waits cannot be interrupted).
const TRAP_GRACE: Duration = Duration::from_secs(5);
/// Exit code of a process whose guest trapped outside a worker's call.
const EXIT_TRAPPED: i32 = 1;

/// Which function runs, on how many workers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Assignment {
    pub(crate) workers: usize,
    pub(crate) function: usize,
}

#[derive(Default)]
struct State {
    /// The guest's function names once it said hello.
    names: Option<Vec<String>>,
    assignment: Option<Assignment>,
    /// The main said it is ready (its start-up done).
    ready: bool,
    /// The main said the next thread it starts is the starter.
    starting: bool,
    /// The thread that starts the workers, made by the main, not yet run.
    starter: Option<(i32, i32)>,
    starter_ran: bool,
    /// Threads the guest started for itself (none may run when a snapshot is taken).
    helpers: usize,
    /// Guest threads the starter started for workers, not yet taken.
    starts: VecDeque<(i32, i32)>,
    /// Worker starts offered so far.
    offered: usize,
    /// Why the guest's main ended without starting the workers.
    main_failed: Option<String>,
}

pub(crate) struct Pack {
    engine: Engine,
    pub(crate) memory: SharedMemory,
    /// The directory the guest sees as `/work`.
    pub(crate) files: PathBuf,
    pre: OnceLock<InstancePre<Host>>,
    /// Where to write the snapshot when the module is ready (`volley wasm-snapshot`).
    snapshot_to: Option<PathBuf>,
    state: Mutex<State>,
    changed: Condvar,
    next_tid: AtomicI32,
}

impl Pack {
    /// Loads the artefact and starts the module: from the snapshot `image` if
    /// given, else by running its main until it says hello; returns the pack
    /// and the module's function names. With `snapshot_to`, the process
    /// writes a snapshot there when the module is ready, and exits.
    pub(crate) fn start(
        artifact: &Path,
        image: Option<&Path>,
        snapshot_to: Option<PathBuf>,
    ) -> Result<(Arc<Pack>, Vec<String>), Error> {
        let engine = engine::engine()?;
        let module = engine::load(&engine, artifact)?;
        let memory_type = module
            .imports()
            .find_map(|i| match i.ty() {
                ExternType::Memory(m) if i.module() == "env" && i.name() == "memory" => Some(m),
                _ => None,
            })
            .ok_or_else(|| Error::Invalid("it imports no env.memory".into()))?;
        let says_ready = module.imports().any(|i| i.module() == "volley" && i.name() == "ready");
        if snapshot_to.is_some() && !says_ready {
            return Err(Error::Guest("the module never says it is ready (it does not import volley.ready)".into()));
        }
        let memory = SharedMemory::new(&engine, memory_type).map_err(|e| Error::Engine(format!("{e:?}")))?;
        let pack = Arc::new(Pack {
            engine: engine.clone(),
            memory: memory.clone(),
            files: files_dir()?,
            pre: OnceLock::new(),
            snapshot_to,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            next_tid: AtomicI32::new(1),
        });
        let mut linker = Linker::new(&engine);
        host::link(&mut linker).map_err(|e| Error::Engine(format!("{e:?}")))?;
        let mut store = Store::new(&engine, Host::new(pack.clone(), Role::Main)?);
        linker.define(&store, "env", "memory", memory).map_err(|e| Error::Engine(format!("{e:?}")))?;
        let pre = linker.instantiate_pre(&module).map_err(|e| Error::Invalid(format!("{e:?}")))?;
        let _ = pack.pre.set(pre.clone());
        if let Some(image) = image {
            let snapshot = snapshot::read(image)?;
            snapshot::map(&pack.memory, image, &snapshot)?;
            pack.next_tid.store(snapshot.next_tid, Ordering::SeqCst);
            let mut state = pack.lock();
            state.starter = Some(snapshot.starter);
            state.names = Some(snapshot.names.clone());
            drop(state);
            return Ok((pack, snapshot.names));
        }
        let main = pack.clone();
        std::thread::Builder::new()
            .name("wasm-main".into())
            .spawn(move || {
                let ended = pre
                    .instantiate(&mut store)
                    .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"))
                    .and_then(|start| start.call(&mut store, ()));
                if let Err(e) = ended {
                    let why = describe(&e, store.data().panicked.as_deref());
                    main.main_failed(format!("the module's main {why}"));
                }
            })
            .map_err(|e| Error::Engine(format!("cannot start the module's main thread: {e}")))?;
        // Its start-up done before the process says hello to the invoker: a
        // warm process runs it off any burst's clock.
        let names = pack.wait_hello(says_ready)?;
        Ok((pack, names))
    }

    /// The module's main is ready: with `snapshot_to`, its snapshot is
    /// written and the process ends (0: written; 1: it could not be).
    pub(crate) fn ready(&self) {
        let Some(dir) = &self.snapshot_to else {
            self.lock().ready = true;
            self.changed.notify_all();
            return;
        };
        let state = self.lock();
        let written = match (&state.names, state.starter, state.helpers) {
            _ if self.memory.data_size() as u64 > snapshot::MAX_IMAGE => Err(format!(
                "its memory after its start-up is {} MiB, more than the {} MiB a snapshot may hold",
                self.memory.data_size() >> 20,
                snapshot::MAX_IMAGE >> 20
            )),
            (Some(names), Some(starter), 0) => {
                let pages = self.memory.size();
                let snapshot =
                    Snapshot { names: names.clone(), starter, next_tid: self.next_tid.load(Ordering::SeqCst), pages };
                snapshot::write(&self.memory, &snapshot, dir).map_err(|e| e.to_string())
            }
            (_, _, 0) => Err("the module's main was ready before it made the thread that starts the workers".into()),
            _ => {
                Err("the module started threads of its own before it was ready: its memory cannot be snapshotted"
                    .into())
            }
        };
        match written {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                volley_note(&format!("volley: no snapshot of the module: {e}"));
                std::process::exit(1);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `found` finds what it looks for in the state, or `timeout` passes (None).
    fn wait_for<T>(&self, timeout: Duration, mut found: impl FnMut(&mut State) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(it) = found(&mut state) {
                return Some(it);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Waits for the main's hello (and, `and_ready`, for its start-up to end).
    fn wait_hello(&self, and_ready: bool) -> Result<Vec<String>, Error> {
        let said = self.wait_for(HELLO_TIMEOUT, |state| match (&state.names, &state.main_failed) {
            (Some(names), _) if state.ready || !and_ready => Some(Ok(names.clone())),
            (_, Some(why)) => Some(Err(Error::Guest(why.clone()))),
            _ => None,
        });
        said.unwrap_or_else(|| {
            Err(Error::Guest(format!(
                "the module's main did not say hello and end its start-up within {HELLO_TIMEOUT:?}"
            )))
        })
    }

    /// Why the module's main failed, if it does within `timeout`.
    pub(crate) fn failure_within(&self, timeout: Duration) -> Option<String> {
        self.wait_for(timeout, |state| state.main_failed.clone())
    }

    /// The main's next thread is the starter.
    pub(crate) fn starting(&self) {
        self.lock().starting = true;
    }

    pub(crate) fn hello(&self, names: Vec<String>) {
        self.lock().names = Some(names);
        self.changed.notify_all();
    }

    pub(crate) fn main_failed(&self, why: String) {
        let mut state = self.lock();
        state.main_failed.get_or_insert(why);
        drop(state);
        self.changed.notify_all();
    }

    /// The starter waits here for the pack (it runs once the pack is there).
    pub(crate) fn wait_assignment(pack: &Pack) -> Assignment {
        let mut state = pack.lock();
        loop {
            if let Some(a) = state.assignment {
                return a;
            }
            state = pack.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The index of the function the pack runs (0 before it is assigned).
    pub(crate) fn function(&self) -> usize {
        self.lock().assignment.map_or(0, |a| a.function)
    }

    /// `wasi.thread-spawn`: the main's start right after it said `starting`
    /// is the starter (run when the pack comes); the starter's are the workers' (as many as the pack
    /// has); any other is a thread the guest wants for itself, run on a
    /// thread of its own. Returns the thread id, or -1.
    pub(crate) fn thread_spawn(pack: &Arc<Pack>, from: Spawner, start_arg: i32) -> i32 {
        let Ok(tid) =
            pack.next_tid.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| (t < 0x1FFF_FFFF).then_some(t + 1))
        else {
            return -1;
        };
        let mut state = pack.lock();
        match from {
            Spawner::Main if state.starting && state.starter.is_none() => {
                state.starting = false;
                state.starter = Some((tid, start_arg));
                drop(state);
                Pack::run_starter_if_due(pack);
                return tid;
            }
            Spawner::Starter if state.assignment.is_some_and(|a| state.offered < a.workers) => {
                state.offered += 1;
                state.starts.push_back((tid, start_arg));
                drop(state);
                pack.changed.notify_all();
                return tid;
            }
            _ => state.helpers += 1,
        }
        drop(state);
        match pack.spawn_helper(tid, start_arg) {
            Ok(()) => tid,
            Err(_) => -1,
        }
    }

    /// Runs the starter once both it and the pack are there.
    fn run_starter_if_due(pack: &Arc<Pack>) {
        let mut state = pack.lock();
        let (Some(_), Some((tid, start_arg)), false) = (state.assignment, state.starter, state.starter_ran) else {
            return;
        };
        state.starter_ran = true;
        drop(state);
        let started = Host::new(pack.clone(), Role::Starter).and_then(|host| {
            let mut store = Store::new(&pack.engine, host);
            let runner = pack.clone();
            std::thread::Builder::new()
                .name("wasm-starter".into())
                .spawn(move || {
                    if let Err(e) = runner.run_thread(&mut store, tid, start_arg) {
                        let why = describe(&e, store.data().panicked.as_deref());
                        runner.main_failed(format!("the module's thread that starts the workers {why}"));
                    }
                })
                .map(drop)
                .map_err(|e| Error::Engine(format!("cannot start the module's starter thread: {e}")))
        });
        if let Err(e) = started {
            pack.main_failed(e.to_string());
        }
    }

    fn spawn_helper(self: &Arc<Pack>, tid: i32, start_arg: i32) -> Result<(), Error> {
        let pack = self.clone();
        let mut store = Store::new(&self.engine, Host::new(self.clone(), Role::Helper)?);
        std::thread::Builder::new()
            .name(format!("wasm-thread-{tid}"))
            .spawn(move || {
                if let Err(e) = pack.run_thread(&mut store, tid, start_arg) {
                    let why = describe(&e, store.data().panicked.as_deref());
                    // As a process whose thread crashed: the whole pack ends.
                    volley_note(&format!("volley: a thread the module started {why}; the pack ends"));
                    std::process::exit(EXIT_TRAPPED);
                }
            })
            .map(|_| ())
            .map_err(|e| Error::Engine(format!("cannot start a thread for the module: {e}")))
    }

    /// Instantiates the module in `store` and runs the guest thread `tid`.
    fn run_thread(&self, store: &mut Store<Host>, tid: i32, start_arg: i32) -> wasmtime::Result<()> {
        let pre = self.pre.get().ok_or_else(|| wasmtime::format_err!("the module is not ready"))?;
        let instance = pre.instantiate(&mut *store)?;
        let start = instance.get_typed_func::<(i32, i32), ()>(&mut *store, "wasi_thread_start")?;
        start.call(&mut *store, (tid, start_arg))
    }

    /// Runs function `function` on `worker`: on the guest thread the module's
    /// main starts for it, in this thread.
    pub(crate) fn run_worker(self: &Arc<Pack>, function: usize, worker: &Worker) -> WorkerResult {
        let rank = worker.rank();
        let (tid, start_arg) = self.take_start(worker, function)?;
        let mut store = Store::new(&self.engine, Host::new(self.clone(), Role::Worker(WorkerRef::new(worker)))?);
        let ran = self.run_thread(&mut store, tid, start_arg);
        let host = store.into_data();
        match (ran, host.finished) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(format!("worker {rank}'s thread ended without reporting a result").into()),
            (Err(e), _) => {
                // Other guest threads may wait on a lock this one held: give them a moment, then end the process.
                std::thread::spawn(|| {
                    std::thread::sleep(TRAP_GRACE);
                    std::process::exit(EXIT_TRAPPED);
                });
                Err(format!("worker {rank} {}", describe(&e, host.panicked.as_deref())).into())
            }
        }
    }

    /// Assigns the pack (the first worker to arrive) and waits for a guest
    /// thread started for this worker.
    fn take_start(self: &Arc<Pack>, worker: &Worker, function: usize) -> Result<(i32, i32), String> {
        let timeout = worker.comm().op_timeout().max(START_TIMEOUT);
        let mut state = self.lock();
        if state.assignment.is_none() {
            state.assignment = Some(Assignment { workers: worker.comm().pack_ranks().len(), function });
            drop(state);
            self.changed.notify_all();
            Pack::run_starter_if_due(self);
            state = self.lock();
        }
        drop(state);
        let start = self
            .wait_for(timeout, |state| state.starts.pop_front().map(Ok).or_else(|| state.main_failed.clone().map(Err)));
        start.unwrap_or_else(|| {
            Err(format!("the module's main did not start worker {}'s thread within {timeout:?}", worker.rank()))
        })
    }
}

/// How a guest thread ended badly, in words.
fn describe(e: &wasmtime::Error, panicked: Option<&str>) -> String {
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return format!("exited with code {}", exit.0);
    }
    match panicked {
        Some(message) => format!("panicked: {message}"),
        None => format!("trapped: {}", format!("{e:?}").lines().next().unwrap_or_default()),
    }
}

fn volley_note(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The pack's files directory: new, under the process's temporary directory
/// (a sandboxed pack's is its cell's, removed with it).
fn files_dir() -> Result<PathBuf, Error> {
    use std::os::unix::fs::DirBuilderExt;
    let mut random = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random));
    let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("volley-wasm-{}-{name}", std::process::id()));
    // A new directory, the process's own: never one someone made (or linked) there before.
    std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|source| Error::Write { path: dir.clone(), source })?;
    Ok(dir)
}
