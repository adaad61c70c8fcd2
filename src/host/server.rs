//! The host side of the control socket.
//!
//! One host per data dir: the host holds an exclusive lock on `<data-dir>/host.lock` for its
//! whole life (the OS drops it when the process dies, however it dies), so a socket file
//! left by a crashed host is known to be stale and is replaced, and a live host is never
//! displaced. The socket is bound under a private name, given mode 0660 (and the configured
//! group), and only then renamed into place, so it is never reachable with wider access.
//!
//! Each connection is one task. It never holds up the engine: events reach it through the
//! bus's lossy broadcast, and a subscriber that falls behind is told so and sent a fresh
//! snapshot. A client that vanishes mid-line ends only its own task.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::HostError;
use super::attention::spawn_notifier;
use super::feed::spawn_console_feed;
use super::protocol::{ClientMessage, Feed, HostMessage, Outcome, PROTOCOL_VERSION, SOCKET_FILE};
use super::tap::Lines;
use crate::command::{Command, Request};
use crate::governance::{Channel, Identity, Provenance};
use crate::runtime::{Runtime, RuntimeError};

/// The lock file only the host holds.
pub const LOCK_FILE: &str = "host.lock";

/// How long a client may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Host::close`] waits for connections to say goodbye.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The longest line a client may send (commands are small).
const MAX_CLIENT_LINE: u64 = 1024 * 1024;

/// Live event lines kept for subscribers that are behind; beyond this a subscriber gets a
/// snapshot instead.
const FANOUT_CAPACITY: usize = 16_384;

/// Bytes of event lines gathered into one write to a client.
const WRITE_BATCH: usize = 64 * 1024;

/// What the fan-out hands every subscribed client: an event line, encoded once for all of
/// them, or word that events were missed (the fan-out itself fell behind the bus).
#[derive(Clone)]
pub(super) enum Fanout {
    Line(Arc<[u8]>),
    Lagged(u64),
}

/// Encode each event of the bus once, as the `event` message line every subscribed client
/// is sent, instead of once per client: with 20 consoles attached, encoding was most of the
/// host's work.
fn spawn_fanout(runtime: &Runtime, closing: CancellationToken) -> (Lines<Fanout>, JoinHandle<()>) {
    let lines = Lines::new(FANOUT_CAPACITY, runtime.bus().clone());
    let feed = lines.clone();
    let task = tokio::spawn(async move {
        // Nobody listens: the bus is not drawn on until someone does.
        while let Some(mut events) = feed.opened(&closing).await {
            loop {
                let received = tokio::select! {
                    () = closing.cancelled() => return,
                    received = events.recv() => received,
                };
                let message = match received {
                    Ok(_) if feed.unheard() => break,
                    Ok(envelope) => match event_line(&envelope) {
                        Ok(line) => Fanout::Line(line),
                        Err(error) => {
                            tracing::warn!(%error, seq = envelope.seq, "host: an event did not encode");
                            continue;
                        }
                    },
                    Err(RecvError::Lagged(missed)) => Fanout::Lagged(missed),
                    Err(RecvError::Closed) => return,
                };
                let _ = feed.sender.send(message);
            }
        }
    });
    (lines, task)
}

/// `{"msg":"event","event":ENVELOPE}` and a newline: [`HostMessage::Event`]'s line, without
/// a copy of the envelope.
fn event_line(envelope: &crate::event::Envelope) -> serde_json::Result<Arc<[u8]>> {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(br#"{"msg":"event","event":"#);
    serde_json::to_writer(&mut line, envelope)?;
    line.extend_from_slice(b"}\n");
    Ok(line.into())
}

/// `{"msg":"snapshot","events":[…]}` of the runtime's current picture, after
/// `{"msg":"lagged","missed":N}` when events were missed: encoded straight from the shared
/// envelopes.
pub(super) fn snapshot_line(
    backlog: &[Arc<crate::event::Envelope>],
    missed: Option<u64>,
) -> serde_json::Result<Arc<[u8]>> {
    #[derive(serde::Serialize)]
    struct Snapshot<'a> {
        msg: &'static str,
        events: Vec<&'a crate::event::Envelope>,
    }
    let mut line = Vec::new();
    if let Some(missed) = missed {
        serde_json::to_writer(&mut line, &HostMessage::Lagged { missed })?;
        line.push(b'\n');
    }
    let events = backlog.iter().map(AsRef::as_ref).collect();
    serde_json::to_writer(&mut line, &Snapshot { msg: "snapshot", events })?;
    line.push(b'\n');
    Ok(line.into())
}

/// How the host listens.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// The group given access to the socket (mode 0660); `None` keeps the process's group.
    pub socket_group: Option<String>,
    /// `notify.command`: run with a JSON description when a task starts waiting for a person.
    pub notify_command: Vec<String>,
}

impl HostOptions {
    /// The options `settings` give.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            socket_group: settings.host.socket_group.clone(),
            notify_command: settings.notify.command.clone(),
        }
    }
}

/// The data dir's host lock, held for the host's life: the proof, to every other process,
/// that this one hosts. The OS releases it when the process dies.
pub struct HostLock {
    file: File,
    data_dir: PathBuf,
}

impl HostLock {
    /// Take the lock, or say who holds it ([`HostError::AlreadyHosted`]).
    pub fn take(data_dir: &Path) -> Result<Self, HostError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| HostError::Io { path: data_dir.to_owned(), source })?;
        Ok(Self { file: take_lock(data_dir)?, data_dir: data_dir.to_owned() })
    }
}

/// A listening host. Dropping it stops listening; [`Host::close`] also tells every
/// connected client.
pub struct Host {
    socket: PathBuf,
    closing: CancellationToken,
    accept: JoinHandle<()>,
    /// The tasks that encode the bus's events for subscribers.
    feeds: Vec<JoinHandle<()>>,
    /// Reloads users, roles and policies when the governing flightdeck.yaml changes.
    watcher: Option<super::reload::SettingsWatcher>,
    _lock: File,
}

impl Host {
    /// Listen on the control socket of the data dir whose lock is `lock`.
    pub fn listen(
        lock: HostLock,
        runtime: Arc<Runtime>,
        options: &HostOptions,
    ) -> Result<Self, HostError> {
        let HostLock { file: lock, data_dir } = lock;
        let data_dir = data_dir.as_path();
        let socket = data_dir.join(SOCKET_FILE);
        let listener = bind_private(&socket, options.socket_group.as_deref())?;
        let closing = CancellationToken::new();
        if !options.notify_command.is_empty() {
            let command = options.notify_command.clone();
            spawn_notifier(runtime.bus(), command, closing.clone());
        }
        // The governing project's settings: users, roles and policies reload from there.
        let governing =
            super::recorded_project(data_dir).unwrap_or_else(|| runtime.project_dir().to_owned());
        let watcher = match super::reload::watch_settings(Arc::clone(&runtime), &governing) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(%error, "settings are not watched");
                None
            }
        };
        let (events, fanout) = spawn_fanout(&runtime, closing.clone());
        let (console, feed) = spawn_console_feed(&runtime, closing.clone());
        let feeds = Feeds { events, console };
        let accept = tokio::spawn(accept_loop(listener, runtime, feeds, closing.clone()));
        tracing::info!(socket = %socket.display(), "host: listening");
        Ok(Self { socket, closing, accept, feeds: vec![fanout, feed], watcher, _lock: lock })
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Tell every client the host is going, stop listening, wait (briefly) for the
    /// connections to end, and remove the socket. Afterwards no task of the host holds the
    /// runtime.
    pub async fn close(mut self) {
        // Joined first: its thread holds the runtime.
        drop(self.watcher.take());
        self.closing.cancel();
        let _ = tokio::time::timeout(CLOSE_WAIT, &mut self.accept).await;
        for feed in &mut self.feeds {
            let _ = tokio::time::timeout(CLOSE_WAIT, feed).await;
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.closing.cancel();
        self.accept.abort();
        self.feeds.iter().for_each(JoinHandle::abort);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The pid of the process hosting `data_dir`, as its lock file says (for messages).
pub fn host_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join(LOCK_FILE)).ok()?.trim().parse().ok()
}

fn take_lock(data_dir: &Path) -> Result<File, HostError> {
    let path = data_dir.join(LOCK_FILE);
    let io = |source| HostError::Io { path: path.clone(), source };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(HostError::AlreadyHosted {
                data_dir: data_dir.to_owned(),
                pid: host_pid(data_dir),
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
    }
    file.set_len(0).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

/// Bind under a private name, set mode and group, then rename into place (replacing a stale
/// socket: the lock proves no live host owns it).
fn bind_private(socket: &Path, group: Option<&str>) -> Result<UnixListener, HostError> {
    let staging = socket.with_file_name(format!(".{SOCKET_FILE}.{}", std::process::id()));
    let io = |source| HostError::Io { path: socket.to_owned(), source };
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging).map_err(io)?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    if let Some(name) = group {
        let group = nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| HostError::UnknownGroup(name.to_owned()))?;
        std::os::unix::fs::chown(&staging, None, Some(group.gid.as_raw())).map_err(io)?;
    }
    std::fs::rename(&staging, socket).map_err(io)?;
    Ok(listener)
}

/// The lines subscribers are sent, by feed.
#[derive(Clone)]
struct Feeds {
    /// Every event, one line each.
    events: Lines<Fanout>,
    /// A console's feed: one line per tick.
    console: Lines<Fanout>,
}

async fn accept_loop(
    listener: UnixListener,
    runtime: Arc<Runtime>,
    feeds: Feeds,
    closing: CancellationToken,
) {
    // Aborted with this task: a connection stuck writing to a client that stopped reading
    // must not outlive the host.
    let mut connections: Vec<AbortOnDrop> = Vec::new();
    loop {
        let stream = tokio::select! {
            () = closing.cancelled() => {
                drop(listener);
                drop(runtime);
                for mut connection in connections {
                    let _ = (&mut connection.0).await;
                }
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "host: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let runtime = Arc::clone(&runtime);
        let closing = closing.clone();
        let feeds = feeds.clone();
        connections.retain(|connection| !connection.0.is_finished());
        connections.push(AbortOnDrop(tokio::spawn(async move {
            if let Err(error) = serve(stream, &runtime, &feeds, &closing).await {
                tracing::debug!(%error, "host: connection ended");
            }
        })));
    }
}

/// One client: hello, welcome, then commands and (when subscribed) events until either side
/// goes.
async fn serve(
    stream: UnixStream,
    runtime: &Runtime,
    feeds: &Feeds,
    closing: &CancellationToken,
) -> std::io::Result<()> {
    let credentials = stream.peer_cred()?;
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut out = Writer(write);
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_message(&mut reader)).await;
    let Ok(Ok(Some(ClientMessage::Hello { version, from, as_user, subscribe, readonly, feed }))) =
        hello
    else {
        let reason = "the first message must be a hello".to_owned();
        return out.send(&HostMessage::Refused { reason }).await;
    };
    if version != PROTOCOL_VERSION {
        let reason = format!("protocol version {version} is not {PROTOCOL_VERSION}");
        return out.send(&HostMessage::Refused { reason }).await;
    }
    // The kernel's word, not the client's: only `attach` and the command line connect here.
    let from = if from == Channel::Attach { Channel::Attach } else { Channel::CommandLine };
    let provenance = Provenance::peer(credentials.uid(), credentials.pid(), from);
    let identity = match runtime.assume(&provenance, as_user.as_deref()) {
        Ok(identity) => identity,
        Err(denied) => {
            let reason = denied.reason.to_string();
            return out.send(&HostMessage::Refused { reason }).await;
        }
    };
    out.send(&HostMessage::Welcome {
        version: PROTOCOL_VERSION,
        user: identity.user.as_str().to_owned(),
        role: identity.role.to_string(),
        account: provenance.account.clone(),
        host_pid: std::process::id(),
    })
    .await?;
    let session = Session { runtime, provenance, identity, readonly };
    let mut events = subscribe.then(|| match feed {
        Feed::Events => feeds.events.subscribe(),
        Feed::Console => feeds.console.subscribe(),
    });
    if events.is_some() {
        out.snapshot(runtime).await?;
    }
    // Lines are read by a task of their own: a read cut short by an event would lose bytes.
    let (line_sender, mut messages) = tokio::sync::mpsc::channel(16);
    let reading = tokio::spawn(async move {
        loop {
            let message = read_message(&mut reader).await;
            let end = !matches!(message, Ok(Some(_)));
            if line_sender.send(message).await.is_err() || end {
                return;
            }
        }
    });
    let _stop_reading = AbortOnDrop(reading);
    loop {
        tokio::select! {
            () = closing.cancelled() => {
                let reason = "the host is exiting".to_owned();
                return out.send(&HostMessage::Closing { reason }).await;
            }
            message = messages.recv() => match message.unwrap_or(Ok(None))? {
                None => return Ok(()),
                Some(message) => {
                    let reply = session.answer(message).await;
                    out.send(&reply).await?;
                }
            },
            received = recv(events.as_mut()) => {
                // What is already there goes in the same write: one system call for a burst
                // of small lines; a large line (a tick of a flood) is written as it is,
                // shared with every other client, not copied.
                let mut lines: Vec<Arc<[u8]>> = Vec::new();
                let mut next = received;
                let mut pending = 0;
                let (missed, closed) = loop {
                    match next {
                        Ok(Fanout::Line(line)) => {
                            pending += line.len();
                            lines.push(line);
                        }
                        Ok(Fanout::Lagged(missed)) | Err(TryRecvError::Lagged(missed)) => {
                            break (Some(missed), false);
                        }
                        Err(TryRecvError::Empty) => break (None, false),
                        Err(TryRecvError::Closed) => break (None, true),
                    }
                    if pending >= WRITE_BATCH {
                        break (None, false);
                    }
                    next = events.as_mut().map_or(Err(TryRecvError::Empty), broadcast::Receiver::try_recv);
                };
                out.lines(&lines).await?;
                if closed {
                    let reason = "the host is exiting".to_owned();
                    return out.send(&HostMessage::Closing { reason }).await;
                }
                if let Some(missed) = missed {
                    // The picture again after the word that events were missed; a console's
                    // without what folding would drop (see `condensed_backlog`), a follower
                    // of every event's whole, so it can print what it missed.
                    let backlog = match feed {
                        Feed::Console => super::feed::condensed_backlog(runtime.backlog()),
                        Feed::Events => runtime.backlog(),
                    };
                    let line = snapshot_line(&backlog, Some(missed)).map_err(std::io::Error::other)?;
                    out.0.write_all(&line).await?;
                }
            },
        }
    }
}

/// The next line of a subscription (as a `try_recv` result, so the batch loop above reads
/// both alike); pending for ever without one.
async fn recv(events: Option<&mut broadcast::Receiver<Fanout>>) -> Result<Fanout, TryRecvError> {
    match events {
        Some(events) => events.recv().await.map_err(|error| match error {
            RecvError::Lagged(missed) => TryRecvError::Lagged(missed),
            RecvError::Closed => TryRecvError::Closed,
        }),
        None => std::future::pending().await,
    }
}

/// One client's standing: who it is and whether it may change anything.
struct Session<'a> {
    runtime: &'a Runtime,
    provenance: Provenance,
    identity: Identity,
    readonly: bool,
}

impl Session<'_> {
    async fn answer(&self, message: ClientMessage) -> HostMessage {
        match message {
            ClientMessage::Hello { .. } => HostMessage::Refused {
                reason: "hello was already said on this connection".to_owned(),
            },
            ClientMessage::Approvals { id } => {
                HostMessage::Approvals { id, approvals: self.runtime.pending_approvals() }
            }
            ClientMessage::Conflicts { id } => HostMessage::Conflicts {
                id,
                conflicts: self.runtime.open_conflicts().into_iter().map(Into::into).collect(),
            },
            ClientMessage::Command { id, command } => {
                let (outcome, message) = self.command(command).await;
                HostMessage::Reply { id, outcome, message }
            }
        }
    }

    async fn command(&self, command: Command) -> (Outcome, Option<String>) {
        if self.readonly {
            return (Outcome::Refused, Some("this connection is read-only".to_owned()));
        }
        let request = Request { user: self.identity.user.clone(), command };
        match self.runtime.submit_from(request, &self.provenance).await {
            Ok(run) => (Outcome::Done, run.map(|run| run.to_string())),
            Err(RuntimeError::Denied(denied)) => (Outcome::Refused, Some(denied.to_string())),
            Err(error) => (Outcome::Invalid, Some(error.to_string())),
        }
    }
}

/// Read one JSON line; `None` at the end of the stream. A malformed line is an error that
/// ends the connection.
async fn read_message(
    reader: &mut BufReader<OwnedReadHalf>,
) -> std::io::Result<Option<ClientMessage>> {
    let mut line = String::new();
    let read = (&mut *reader).take(MAX_CLIENT_LINE).read_line(&mut line).await?;
    if read == 0 {
        return Ok(None);
    }
    if !line.ends_with('\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a client line is too long or cut off",
        ));
    }
    super::protocol::decode_client_line(&line)
        .map(Some)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Writer(OwnedWriteHalf);

impl Writer {
    /// Lines as they are when there is one, else joined into one write.
    async fn lines(&mut self, lines: &[Arc<[u8]>]) -> std::io::Result<()> {
        match lines {
            [] => Ok(()),
            [line] => self.0.write_all(line).await,
            _ => self.0.write_all(&lines.concat()).await,
        }
    }

    async fn send(&mut self, message: &HostMessage) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.0.write_all(&line).await
    }

    /// The whole picture, as a subscriber is first sent it.
    async fn snapshot(&mut self, runtime: &Runtime) -> std::io::Result<()> {
        let line = snapshot_line(&runtime.backlog(), None).map_err(std::io::Error::other)?;
        self.0.write_all(&line).await
    }
}
