//! A scripted HTTP/1.1 server on 127.0.0.1 for executor tests. Each request is recorded and
//! answered with the next scripted reply (or the fallback reply once the script is used up).
//! How a connection is kept or closed is chosen by [`ConnectionMode`], to reproduce servers
//! that drop keep-alive connections. Written on `tokio::net` so the tests see real sockets,
//! real chunked encoding, real TLS and real dropped connections, with no server framework in
//! between.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A whole response with `content-length`.
    Full { status: u16, headers: Vec<(String, String)>, body: String },
    /// A `text/event-stream` body in chunked encoding, written `chunk_bytes` at a time.
    /// `cut_after` drops the connection after that many body bytes, mid-stream; `stall_after`
    /// stops writing after that many bytes and keeps the connection open, silent.
    Stream {
        body: String,
        chunk_bytes: usize,
        cut_after: Option<usize>,
        stall_after: Option<usize>,
    },
    /// Waits this long after reading the request, then answers.
    Delayed(Duration, Box<Reply>),
    /// Closes the connection without answering.
    Hangup,
}

impl Reply {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::raw(status, "application/json", &body.to_string())
    }

    pub fn raw(status: u16, content_type: &str, body: &str) -> Self {
        Self::Full {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn sse(body: &str) -> Self {
        Self::Stream { body: body.into(), chunk_bytes: 7, cut_after: None, stall_after: None }
    }

    pub fn sse_cut(body: &str, cut_after: usize) -> Self {
        Self::Stream {
            body: body.into(),
            chunk_bytes: 7,
            cut_after: Some(cut_after),
            stall_after: None,
        }
    }

    pub fn sse_stall(body: &str, stall_after: usize) -> Self {
        Self::Stream {
            body: body.into(),
            chunk_bytes: 7,
            cut_after: None,
            stall_after: Some(stall_after),
        }
    }

    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let Self::Full { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }

    #[must_use]
    pub fn after(self, delay: Duration) -> Self {
        Self::Delayed(delay, Box::new(self))
    }
}

/// How the server treats a connection after answering on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionMode {
    /// One request, answered with `connection: close`, then closed.
    Close,
    /// Any number of requests per connection (HTTP/1.1 keep-alive).
    KeepAlive,
    /// Answers the first request as keep-alive, then closes the connection without answering
    /// when a second request arrives on it (llama.cpp's dropped keep-alive, made certain).
    DropSecond,
    /// Answers as keep-alive, then closes the connection a moment later without reading
    /// more, as a server does that ends every connection after one answer without saying so.
    CloseAfterAnswer,
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    /// Which accepted connection it came on, from 0.
    pub connection: usize,
    pub method: String,
    /// The request target: a path, or a whole URL when sent to a proxy.
    pub path: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// What every connection shares.
struct Shared {
    mode: ConnectionMode,
    recorded: Mutex<Vec<Recorded>>,
    replies: Mutex<VecDeque<Reply>>,
    fallback: Option<Reply>,
    connections: AtomicUsize,
    unanswered: AtomicUsize,
}

impl Shared {
    fn next_reply(&self) -> Reply {
        self.replies.lock().unwrap().pop_front().or_else(|| self.fallback.clone()).unwrap_or_else(
            || {
                Reply::json(
                    418,
                    &serde_json::json!({"error": {"message": "fake server: no scripted reply left"}}),
                )
            },
        )
    }
}

/// TLS for [`FakeServer::start_tls`]: the server's certificate chain and key, PEM.
pub struct TlsIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The running server; stops (and drops every open connection) when dropped.
pub struct FakeServer {
    /// `http://127.0.0.1:<port>` (`https://localhost:<port>` for TLS).
    pub url: String,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(replies: Vec<Reply>) -> Self {
        Self::start_with(ConnectionMode::Close, replies, None).await
    }

    /// A server whose connections behave per `mode`; `fallback` answers once `replies` ran out.
    pub async fn start_with(
        mode: ConnectionMode,
        replies: Vec<Reply>,
        fallback: Option<Reply>,
    ) -> Self {
        Self::spawn(mode, replies, fallback, None).await
    }

    /// An HTTPS server presenting `identity`, reached as `https://localhost:<port>`.
    pub async fn start_tls(identity: &TlsIdentity, replies: Vec<Reply>) -> Self {
        let certs = pem_certificates(&identity.cert_pem);
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::spawn(ConnectionMode::Close, replies, None, Some(acceptor)).await
    }

    async fn spawn(
        mode: ConnectionMode,
        replies: Vec<Reply>,
        fallback: Option<Reply>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let shared = Arc::new(Shared {
            mode,
            recorded: Mutex::default(),
            replies: Mutex::new(VecDeque::from(replies)),
            fallback,
            connections: AtomicUsize::new(0),
            unanswered: AtomicUsize::new(0),
        });
        let state = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                // Each event is written on its own, as real servers do; Nagle's algorithm
                // would hold it back until the client's delayed ACK (40 ms).
                let _ = socket.set_nodelay(true);
                let number = state.connections.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&state);
                match &tls {
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        connections.spawn(async move {
                            if let Ok(stream) = acceptor.accept(socket).await {
                                serve(stream, number, state).await;
                            }
                        });
                    }
                    None => {
                        connections.spawn(serve(socket, number, state));
                    }
                }
            }
        });
        Self { url, shared, accept }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }

    /// Requests the server closed the connection on without answering (`DropSecond`).
    pub fn unanswered(&self) -> usize {
        self.shared.unanswered.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn pem_certificates(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).map(Result::unwrap).collect()
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    connection: usize,
    shared: Arc<Shared>,
) {
    let mode = shared.mode;
    let mut buffer = Vec::new();
    let mut answered = 0usize;
    loop {
        let Some(mut request) = read_request(&mut socket, &mut buffer).await else { return };
        if mode == ConnectionMode::DropSecond && answered == 1 {
            shared.unanswered.fetch_add(1, Ordering::SeqCst);
            return;
        }
        request.connection = connection;
        shared.recorded.lock().unwrap().push(request);
        let keep_alive = mode != ConnectionMode::Close;
        if !write_reply(&mut socket, shared.next_reply(), keep_alive).await {
            return;
        }
        answered += 1;
        match mode {
            ConnectionMode::Close => return,
            ConnectionMode::CloseAfterAnswer => {
                tokio::time::sleep(Duration::from_millis(2)).await;
                return;
            }
            ConnectionMode::KeepAlive | ConnectionMode::DropSecond => {}
        }
    }
}

/// Reads one request; bytes past its end stay in `buffer` for the next one.
async fn read_request<S: AsyncRead + Unpin>(
    socket: &mut S,
    data: &mut Vec<u8>,
) -> Option<Recorded> {
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while data.len() < head_end + 4 + length {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let body = data[head_end + 4..head_end + 4 + length].to_vec();
    data.drain(..head_end + 4 + length);
    Some(Recorded {
        at: Instant::now(),
        connection: 0,
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Writes `reply`; false when the connection is finished (closed, cut or hung up).
async fn write_reply<S: AsyncWrite + Unpin>(
    socket: &mut S,
    reply: Reply,
    keep_alive: bool,
) -> bool {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    match reply {
        Reply::Delayed(delay, reply) => {
            tokio::time::sleep(delay).await;
            Box::pin(write_reply(socket, *reply, keep_alive)).await
        }
        Reply::Hangup => false,
        Reply::Full { status, headers, body } => {
            let mut text = format!("HTTP/1.1 {status} {}\r\n", reason(status));
            for (name, value) in headers {
                let _ = write!(text, "{name}: {value}\r\n");
            }
            let _ =
                write!(text, "content-length: {}\r\nconnection: {connection}\r\n\r\n", body.len());
            text.push_str(&body);
            if socket.write_all(text.as_bytes()).await.is_err() {
                return false;
            }
            let _ = socket.flush().await;
            if !keep_alive {
                let _ = socket.shutdown().await;
            }
            keep_alive
        }
        Reply::Stream { body, chunk_bytes, cut_after, stall_after } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                 transfer-encoding: chunked\r\nconnection: {connection}\r\n\r\n"
            );
            if socket.write_all(head.as_bytes()).await.is_err() {
                return false;
            }
            let body = body.as_bytes();
            let end = cut_after.or(stall_after).unwrap_or(body.len()).min(body.len());
            for piece in body[..end].chunks(chunk_bytes.max(1)) {
                let mut frame = format!("{:x}\r\n", piece.len()).into_bytes();
                frame.extend_from_slice(piece);
                frame.extend_from_slice(b"\r\n");
                if socket.write_all(&frame).await.is_err() {
                    return false;
                }
                let _ = socket.flush().await;
            }
            if stall_after.is_some() {
                // Silent but open, until the client gives up or the server is dropped.
                std::future::pending::<()>().await;
            }
            if cut_after.is_some() {
                // A cut stream just drops the socket: no final chunk.
                return false;
            }
            if socket.write_all(b"0\r\n\r\n").await.is_err() {
                return false;
            }
            let _ = socket.flush().await;
            if !keep_alive {
                let _ = socket.shutdown().await;
            }
            keep_alive
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        418 => "I'm a teapot",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}
