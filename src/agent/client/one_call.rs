//! One D-Bus method call in one round trip, for the libvirt hook's report to the daemon.
//!
//! A D-Bus client library authenticates, waits for the bus's `OK`, says `Hello`, waits for its
//! answer and only then sends the call: three round trips through the bus before the one that
//! matters, each a wake-up of the bus, the client and (for the call) the daemon, while
//! libvirtd waits for the hook. The protocol lets a client pipeline all of it (the
//! specification's "BEGIN" may follow "AUTH" before the server's answer, and messages may
//! follow "BEGIN"), as systemd's sd-bus does: here the authentication, `Hello` and the call go
//! out in one write, and the answers are read until the call's own.
//!
//! Only what that needs is here: `EXTERNAL` authentication (a Unix socket's credentials), a
//! method call whose arguments are strings, and of the answers the header fields that find
//! the reply (its serial) and an error's name and message. Anything unexpected is an error,
//! and the caller falls back to its other ways of telling the daemon.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The call's outcome as the bus or the daemon gave it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The socket or the protocol failed before an answer came.
    #[error("{0}")]
    Transport(String),
    /// The bus refused the authentication.
    #[error("the bus refused the authentication: {0}")]
    Rejected(String),
    /// The call was answered with a D-Bus error.
    #[error("{name}: {message}")]
    Method {
        /// The error's name (`org.freedesktop.DBus.Error.AccessDenied`, ...).
        name: String,
        /// Its message, if it has one.
        message: String,
    },
}

fn transport(what: &str, e: impl std::fmt::Display) -> CallError {
    CallError::Transport(format!("{what}: {e}"))
}

/// A method call with string arguments only.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The bus name it goes to.
    pub destination: &'a str,
    /// The object path.
    pub path: &'a str,
    /// The interface.
    pub interface: &'a str,
    /// The method.
    pub member: &'a str,
    /// The arguments (signature `s...`).
    pub args: &'a [&'a str],
}

/// The most bytes of answers read before the call's own (a `NameAcquired` signal and the
/// `Hello` reply come first, a few hundred bytes).
const MAX_READ: usize = 1 << 20;

/// Makes `call` on the bus listening at `socket` (as the effective user) and waits at most
/// `timeout` in all for its answer.
pub fn call(socket: &Path, call: &Call<'_>, timeout: Duration) -> Result<(), CallError> {
    let deadline = std::time::Instant::now() + timeout;
    let mut stream = connect(socket).map_err(|e| transport("connect", e))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut out = auth_lines(uid);
    out.extend(encode(&HELLO, 1, 0));
    // NO_AUTO_START: the call never starts a stopped service.
    out.extend(encode(call, 2, FLAG_NO_AUTO_START));
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| transport("socket", e))?;
    stream.write_all(&out).map_err(|e| transport("write", e))?;
    let mut answers = Answers::default();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(CallError::Transport(format!(
                "no answer within {timeout:?}"
            )));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| transport("socket", e))?;
        let n = stream.read(&mut buf).map_err(|e| transport("read", e))?;
        if n == 0 {
            return Err(CallError::Transport("the bus closed the connection".into()));
        }
        if let Some(done) = answers.feed(&buf[..n], 2)? {
            return done;
        }
    }
}

/// Connects without waiting: a bus whose backlog is full (it accepts no one) is an error at
/// once, where a blocking connect would wait for it without end.
fn connect(socket: &Path) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{socket as new_socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = new_socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    nix::sys::socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &UnixAddr::new(socket)?,
    )?;
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// `Hello`, the first message on a bus connection.
const HELLO: Call<'static> = Call {
    destination: "org.freedesktop.DBus",
    path: "/org/freedesktop/DBus",
    interface: "org.freedesktop.DBus",
    member: "Hello",
    args: &[],
};

const FLAG_NO_AUTO_START: u8 = 0x2;

/// The authentication, pipelined: `EXTERNAL` as `uid` (its decimal digits, hex-encoded), then
/// `BEGIN` without waiting for the bus's `OK`.
fn auth_lines(uid: u32) -> Vec<u8> {
    let hex: String = (uid.to_string().bytes())
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\0AUTH EXTERNAL {hex}\r\nBEGIN\r\n").into_bytes()
}

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;

const FIELD_PATH: u8 = 1;
const FIELD_INTERFACE: u8 = 2;
const FIELD_MEMBER: u8 = 3;
const FIELD_ERROR_NAME: u8 = 4;
const FIELD_REPLY_SERIAL: u8 = 5;
const FIELD_DESTINATION: u8 = 6;
const FIELD_SIGNATURE: u8 = 8;

/// Pads `buf` with zeros to a multiple of `n` (offsets count from the message's start).
fn pad(buf: &mut Vec<u8>, n: usize) {
    while buf.len() % n != 0 {
        buf.push(0);
    }
}

/// A string (`s`, `o`): length, bytes, NUL.
fn put_str(buf: &mut Vec<u8>, s: &str) {
    pad(buf, 4);
    buf.extend((s.len() as u32).to_le_bytes());
    buf.extend(s.as_bytes());
    buf.push(0);
}

/// A signature (`g`): one byte of length, the characters, NUL.
fn put_sig(buf: &mut Vec<u8>, s: &str) {
    buf.push(s.len() as u8);
    buf.extend(s.as_bytes());
    buf.push(0);
}

/// One header field whose value is a string, an object path or a signature.
fn put_field(buf: &mut Vec<u8>, code: u8, sig: &str, value: &str) {
    pad(buf, 8);
    buf.push(code);
    put_sig(buf, sig);
    match sig {
        "g" => put_sig(buf, value),
        _ => put_str(buf, value),
    }
}

/// The method call `call` as a little-endian message with serial `serial`.
fn encode(call: &Call<'_>, serial: u32, flags: u8) -> Vec<u8> {
    let mut body = Vec::new();
    for a in call.args {
        put_str(&mut body, a);
    }
    let mut m = vec![b'l', METHOD_CALL, flags, 1];
    m.extend((body.len() as u32).to_le_bytes());
    m.extend(serial.to_le_bytes());
    m.extend([0u8; 4]); // the header fields' length, set below
    put_field(&mut m, FIELD_PATH, "o", call.path);
    put_field(&mut m, FIELD_INTERFACE, "s", call.interface);
    put_field(&mut m, FIELD_MEMBER, "s", call.member);
    put_field(&mut m, FIELD_DESTINATION, "s", call.destination);
    if !call.args.is_empty() {
        put_field(&mut m, FIELD_SIGNATURE, "g", &"s".repeat(call.args.len()));
    }
    let fields = (m.len() - 16) as u32;
    m[12..16].copy_from_slice(&fields.to_le_bytes());
    pad(&mut m, 8);
    m.extend(body);
    m
}

/// What came back so far: the authentication's answer, then messages.
#[derive(Debug, Default)]
struct Answers {
    /// Bytes not yet understood.
    pending: Vec<u8>,
    /// Whether the bus's `OK` was read.
    authenticated: bool,
    /// Bytes read in all.
    read: usize,
}

impl Answers {
    /// Takes `bytes`; `Some` once the answer to the call with serial `serial` is among them.
    fn feed(
        &mut self,
        bytes: &[u8],
        serial: u32,
    ) -> Result<Option<Result<(), CallError>>, CallError> {
        self.read += bytes.len();
        if self.read > MAX_READ {
            return Err(CallError::Transport(format!(
                "more than {MAX_READ} bytes from the bus before the answer"
            )));
        }
        self.pending.extend_from_slice(bytes);
        if !self.authenticated {
            let Some(end) = self.pending.windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            let line = String::from_utf8_lossy(&self.pending[..end]).into_owned();
            if !line.starts_with("OK ") {
                return Err(CallError::Rejected(line));
            }
            self.pending.drain(..end + 2);
            self.authenticated = true;
        }
        while let Some(len) = message_len(&self.pending)? {
            if self.pending.len() < len {
                break;
            }
            let message: Vec<u8> = self.pending.drain(..len).collect();
            if let Some(answer) = answer_to(&message, serial)? {
                return Ok(Some(answer));
            }
        }
        Ok(None)
    }
}

/// What the bytes `bytes`, as a bus sends them after the authentication, say about the call
/// with serial `serial`, fed in pieces of `piece` bytes (0: at once): `Some` once its answer
/// is among them. For the fuzz target; [`call`] reads the same way.
pub fn read_answers(
    bytes: &[u8],
    serial: u32,
    piece: usize,
) -> Result<Option<Result<(), CallError>>, CallError> {
    let mut answers = Answers::default();
    for chunk in bytes.chunks(if piece == 0 {
        bytes.len().max(1)
    } else {
        piece
    }) {
        if let Some(done) = answers.feed(chunk, serial)? {
            return Ok(Some(done));
        }
    }
    Ok(None)
}

/// Reads integers in a message's own byte order.
#[derive(Debug, Clone, Copy)]
struct Order {
    little: bool,
}

impl Order {
    fn of(message: &[u8]) -> Result<Self, CallError> {
        match message.first() {
            Some(b'l') => Ok(Self { little: true }),
            Some(b'B') => Ok(Self { little: false }),
            other => Err(CallError::Transport(format!(
                "not a D-Bus message (byte order {other:?})"
            ))),
        }
    }

    fn u32(self, bytes: &[u8], at: usize) -> Result<u32, CallError> {
        let b: [u8; 4] = (bytes.get(at..at + 4))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| CallError::Transport("a message ends early".into()))?;
        Ok(match self.little {
            true => u32::from_le_bytes(b),
            false => u32::from_be_bytes(b),
        })
    }
}

/// The whole length of the message at the start of `bytes`, once its fixed header is there.
fn message_len(bytes: &[u8]) -> Result<Option<usize>, CallError> {
    if bytes.len() < 16 {
        return Ok(None);
    }
    let order = Order::of(bytes)?;
    let body = order.u32(bytes, 4)? as usize;
    let fields = order.u32(bytes, 12)? as usize;
    let len = (16 + fields).next_multiple_of(8) + body;
    if len > MAX_READ {
        return Err(CallError::Transport(format!("a message of {len} bytes")));
    }
    Ok(Some(len))
}

/// A string at `at` (aligned to 4 first): the string and the offset after its NUL.
fn get_str(order: Order, m: &[u8], at: usize) -> Result<(String, usize), CallError> {
    let at = at.next_multiple_of(4);
    let len = order.u32(m, at)? as usize;
    let s = (m.get(at + 4..at + 4 + len))
        .ok_or_else(|| CallError::Transport("a string runs past its message".into()))?;
    Ok((String::from_utf8_lossy(s).into_owned(), at + 4 + len + 1))
}

/// A signature at `at`: the signature and the offset after its NUL.
fn get_sig(m: &[u8], at: usize) -> Result<(String, usize), CallError> {
    let len = *m
        .get(at)
        .ok_or_else(|| CallError::Transport("a signature runs past its message".into()))?
        as usize;
    let s = (m.get(at + 1..at + 1 + len))
        .ok_or_else(|| CallError::Transport("a signature runs past its message".into()))?;
    Ok((String::from_utf8_lossy(s).into_owned(), at + 1 + len + 1))
}

/// `Some` when `m` (one whole message) answers the call with serial `serial`.
fn answer_to(m: &[u8], serial: u32) -> Result<Option<Result<(), CallError>>, CallError> {
    let order = Order::of(m)?;
    let kind = m[1];
    if kind != METHOD_RETURN && kind != ERROR {
        return Ok(None);
    }
    let end = 16 + order.u32(m, 12)? as usize;
    let (mut reply_to, mut error_name, mut signature) = (None, None, String::new());
    let mut at: usize = 16;
    while at.next_multiple_of(8) < end {
        at = at.next_multiple_of(8);
        let code = *m
            .get(at)
            .ok_or_else(|| CallError::Transport("a header field runs past its message".into()))?;
        let (sig, next) = get_sig(m, at + 1)?;
        at = next;
        match sig.as_str() {
            "u" => {
                at = at.next_multiple_of(4);
                let v = order.u32(m, at)?;
                at += 4;
                if code == FIELD_REPLY_SERIAL {
                    reply_to = Some(v);
                }
            }
            "s" | "o" => {
                let (v, next) = get_str(order, m, at)?;
                at = next;
                if code == FIELD_ERROR_NAME {
                    error_name = Some(v);
                }
            }
            "g" => {
                let (v, next) = get_sig(m, at)?;
                at = next;
                if code == FIELD_SIGNATURE {
                    signature = v;
                }
            }
            other => {
                return Err(CallError::Transport(format!(
                    "a header field of type {other:?}"
                )))
            }
        }
    }
    if reply_to != Some(serial) {
        return Ok(None);
    }
    if kind == METHOD_RETURN {
        return Ok(Some(Ok(())));
    }
    let body = end.next_multiple_of(8);
    let message = match signature.starts_with('s') {
        true => get_str(order, m, body)?.0,
        false => String::new(),
    };
    Ok(Some(Err(CallError::Method {
        name: error_name.unwrap_or_default(),
        message,
    })))
}

#[cfg(test)]
mod tests;
