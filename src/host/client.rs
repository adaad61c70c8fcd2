//! The client side of the control socket: `approvals`, `approve`, `reject` and `attach`.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::HostError;
use super::protocol::{
    ClientMessage, Feed, HostMessage, MAX_LINE_BYTES, Outcome, PROTOCOL_VERSION, SOCKET_FILE,
    WaitingConflict,
};
use crate::command::Command;
use crate::governance::{Channel, PendingApproval};

/// What a client says in its hello.
#[derive(Debug, Clone)]
pub struct Hello {
    pub from: Channel,
    /// `--as` / `FLIGHTDECK_USER`, checked by the host against the peer's own role.
    pub as_user: Option<String>,
    pub subscribe: bool,
    pub readonly: bool,
    /// What a subscriber is sent: every event, or a console's feed.
    pub feed: Feed,
}

/// A connection to a data dir's host, after the host's welcome.
pub struct HostClient {
    path: PathBuf,
    reader: BufReader<OwnedReadHalf>,
    /// The line being read, kept from line to line (a large run's plan is a long one).
    line: String,
    writer: OwnedWriteHalf,
    next_id: u64,
    /// The host's `welcome`: who it takes this client for.
    pub welcome: HostMessage,
}

impl HostClient {
    /// Connect to the host of `data_dir` and say hello. No socket, or one nobody listens on
    /// (a host that crashed), is [`HostError::NoHost`].
    pub async fn connect(data_dir: &Path, hello: Hello) -> Result<Self, HostError> {
        let path = data_dir.join(SOCKET_FILE);
        let stream = match UnixStream::connect(&path).await {
            Ok(stream) => stream,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(HostError::NoHost { data_dir: data_dir.to_owned() });
            }
            Err(source) => return Err(HostError::Io { path, source }),
        };
        let (read, writer) = stream.into_split();
        let mut client = Self {
            path,
            reader: BufReader::new(read),
            line: String::new(),
            writer,
            next_id: 1,
            welcome: HostMessage::Closing { reason: String::new() },
        };
        client
            .send(&ClientMessage::Hello {
                version: PROTOCOL_VERSION,
                from: hello.from,
                as_user: hello.as_user,
                subscribe: hello.subscribe,
                readonly: hello.readonly,
                feed: hello.feed,
            })
            .await?;
        match client.next().await? {
            Some(welcome @ HostMessage::Welcome { .. }) => client.welcome = welcome,
            Some(HostMessage::Refused { reason }) => return Err(HostError::Refused(reason)),
            other => return Err(client.protocol(&format!("expected a welcome, got {other:?}"))),
        }
        Ok(client)
    }

    /// The user and role the host acts for this client as.
    pub fn identity(&self) -> (&str, &str) {
        match &self.welcome {
            HostMessage::Welcome { user, role, .. } => (user, role),
            _ => ("", ""),
        }
    }

    /// Send a command and wait for its reply (events that arrive meanwhile are skipped).
    pub async fn command(
        &mut self,
        command: Command,
    ) -> Result<(Outcome, Option<String>), HostError> {
        let id = self.take_id();
        self.send(&ClientMessage::Command { id, command }).await?;
        loop {
            match self.next().await? {
                Some(HostMessage::Reply { id: answered, outcome, message }) if answered == id => {
                    return Ok((outcome, message));
                }
                Some(HostMessage::Closing { reason }) => return Err(HostError::Refused(reason)),
                Some(_) => {}
                None => return Err(self.protocol("the host closed the connection")),
            }
        }
    }

    /// What waits for a reviewer on the host, oldest first.
    pub async fn approvals(&mut self) -> Result<Vec<PendingApproval>, HostError> {
        let id = self.take_id();
        self.send(&ClientMessage::Approvals { id }).await?;
        loop {
            match self.next().await? {
                Some(HostMessage::Approvals { id: answered, approvals }) if answered == id => {
                    return Ok(approvals);
                }
                Some(HostMessage::Closing { reason }) => return Err(HostError::Refused(reason)),
                Some(_) => {}
                None => return Err(self.protocol("the host closed the connection")),
            }
        }
    }

    /// Conflicts waiting for a person on the host, oldest first.
    pub async fn conflicts(&mut self) -> Result<Vec<WaitingConflict>, HostError> {
        let id = self.take_id();
        self.send(&ClientMessage::Conflicts { id }).await?;
        loop {
            match self.next().await? {
                Some(HostMessage::Conflicts { id: answered, conflicts }) if answered == id => {
                    return Ok(conflicts);
                }
                Some(HostMessage::Closing { reason }) => return Err(HostError::Refused(reason)),
                Some(_) => {}
                None => return Err(self.protocol("the host closed the connection")),
            }
        }
    }

    /// Send a command without waiting for its reply (attached consoles: the reply and the
    /// command's effects arrive as messages).
    pub async fn send_command(&mut self, command: Command) -> Result<u64, HostError> {
        let id = self.take_id();
        self.send(&ClientMessage::Command { id, command }).await?;
        Ok(id)
    }

    /// The next message from the host; `None` when it closed the connection.
    pub async fn next(&mut self) -> Result<Option<HostMessage>, HostError> {
        read_message(&mut self.reader, &mut self.line, &self.path).await
    }

    /// Split into a reading and a writing half (an attached console reads events while its
    /// keys send commands).
    pub fn split(self) -> (HostEvents, HostCommands) {
        (
            HostEvents { path: self.path.clone(), reader: self.reader, line: self.line },
            HostCommands { writer: self.writer, next_id: self.next_id },
        )
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn send(&mut self, message: &ClientMessage) -> Result<(), HostError> {
        write_message(&mut self.writer, message)
            .await
            .map_err(|source| HostError::Io { path: self.path.clone(), source })
    }

    fn protocol(&self, message: &str) -> HostError {
        HostError::Protocol { path: self.path.clone(), message: message.to_owned() }
    }
}

/// The reading half of a split [`HostClient`].
pub struct HostEvents {
    path: PathBuf,
    reader: BufReader<OwnedReadHalf>,
    line: String,
}

impl HostEvents {
    /// The next message; `None` when the host closed the connection.
    pub async fn next(&mut self) -> Result<Option<HostMessage>, HostError> {
        read_message(&mut self.reader, &mut self.line, &self.path).await
    }
}

/// The next line from the host, decoded; `None` when it closed the connection. `line` is
/// the caller's buffer, kept from line to line; no line longer than the protocol allows is
/// read into it.
async fn read_message(
    reader: &mut BufReader<OwnedReadHalf>,
    line: &mut String,
    path: &Path,
) -> Result<Option<HostMessage>, HostError> {
    line.clear();
    let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX).saturating_add(1);
    let read = reader
        .take(limit)
        .read_line(line)
        .await
        .map_err(|source| HostError::Io { path: path.to_owned(), source })?;
    if read == 0 {
        return Ok(None);
    }
    let protocol = |message: String| HostError::Protocol { path: path.to_owned(), message };
    if line.len() > MAX_LINE_BYTES {
        return Err(protocol("a line longer than the protocol allows".to_owned()));
    }
    super::protocol::decode_host_line(line).map(Some).map_err(|error| protocol(error.to_string()))
}

/// The writing half of a split [`HostClient`].
pub struct HostCommands {
    writer: OwnedWriteHalf,
    next_id: u64,
}

impl HostCommands {
    /// Send a command; its reply arrives on the reading half.
    pub async fn send(&mut self, command: Command) -> std::io::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        write_message(&mut self.writer, &ClientMessage::Command { id, command }).await?;
        Ok(id)
    }
}

async fn write_message(
    writer: &mut OwnedWriteHalf,
    message: &ClientMessage,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line).await
}
