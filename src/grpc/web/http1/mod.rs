//! A lean HTTP/1.1 connection for gRPC-Web unary calls under load. hyper's client builds a
//! general request per call (a header map copied, a body type, a connection task woken
//! through channels, a response handed back): for the same call thousands of times a second
//! that machinery was most of the user-space cost, four times native gRPC's per call. Here
//! the request head is prepared once, each call appends its own headers and body to one
//! buffer written at once, and the answer is read and parsed in the calling task
//! (`httparse` for the head, [`response`] for the body's framing); a CORS preflight goes
//! on it too. Server streams and `transport = "h2"` still use hyper's client.

pub(crate) mod response;

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use self::response::{BodyError, Framing, Parsed};
use crate::grpc::channel::Transport;
use crate::grpc::status;
use crate::grpc::unary::Outcome;

/// The read buffer's size (hyper's first is the same): a unary answer's head and body
/// usually fit in one read; a body is read through it, not kept.
const READ_BUFFER: usize = 8 * 1024;

/// One HTTP/1.1 connection, one call at a time.
pub(crate) struct Http1Connection {
    io: Transport,
    /// The request being written (kept: no allocation per call).
    out: Vec<u8>,
    /// What was read and not used yet: `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// It has carried a whole call: its close before any answer byte is then the server's
    /// idle close racing the request, not an answer.
    reused: bool,
    /// It can carry no more calls (also while a call is under way: a call given up halfway,
    /// by its deadline, leaves it so).
    closed: bool,
}

impl std::fmt::Debug for Http1Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Connection")
            .field("reused", &self.reused)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// A call that did not get a whole answer.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What the call reports.
    pub(crate) outcome: Outcome,
    /// Surely not processed by the server: the request was not wholly written, the server
    /// had closed the connection while idle, or closed a reused connection before any byte
    /// of an answer (as browsers do, the call is sent again on a new connection).
    pub(crate) unsent: bool,
}

/// A call's answer.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The head ended the call (an HTTP error, a trailers-only status): the body was not
    /// waited for (dropped when it had come whole with the head).
    pub(crate) verdict: Option<Outcome>,
    /// The body's framing as it ended (a chunked body's trailer section is in it).
    pub(crate) framing: Framing,
}

impl Http1Connection {
    /// A connection over an open transport (TLS having selected http/1.1).
    pub(crate) fn new(io: Transport) -> Self {
        Self {
            io,
            out: Vec::new(),
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            reused: false,
            closed: false,
        }
    }

    /// Whether it can carry no more calls.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Gives back its buffers between calls (a probe's connection, idle for seconds); the
    /// next call allocates them again.
    pub(crate) fn shrink_idle(&mut self) {
        if self.start == self.end {
            self.buf = Vec::new();
            self.out = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }

    /// Whether the server closed (or wrote to) the connection while it was idle. No system
    /// call unless the runtime was told the socket is readable; an idle HTTP/1.1 connection
    /// that is has been closed, or carries bytes nobody asked for. (TLS session tickets are
    /// read here too, and are not an answer.)
    fn closed_while_idle(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut read = ReadBuf::new(&mut byte);
        !matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut read),
            Poll::Pending
        )
    }

    /// One call: `write_request` appends the whole request to the buffer it is given;
    /// `judge` says whether the response head ends the call; `sink` takes the body.
    pub(crate) async fn exchange<J, S>(
        &mut self,
        write_request: impl FnOnce(&mut Vec<u8>),
        judge: &J,
        sink: &mut S,
    ) -> Result<Answer, Failure>
    where
        J: Fn(u16, &[httparse::Header<'_>]) -> Option<Outcome>,
        S: FnMut(&[u8]) -> Result<(), Outcome>,
    {
        if self.closed || self.closed_while_idle() {
            self.closed = true;
            return Err(Failure {
                outcome: lost("the server closed the connection while it was idle"),
                unsent: true,
            });
        }
        // Closed until the answer is whole: a call dropped halfway leaves it unusable.
        self.closed = true;
        self.out.clear();
        write_request(&mut self.out);
        let written = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        };
        if let Err(e) = written.await {
            // A request not wholly written cannot have been processed.
            return Err(Failure {
                outcome: lost(&format!("connection failed: writing the request: {e}")),
                unsent: true,
            });
        }
        // Nothing is left of an earlier answer (bytes after one close the connection).
        let mut any_answer = false;
        let head = loop {
            match response::parse_head(&self.buf[self.start..self.end], judge) {
                Ok(Parsed::Final(len, head)) => {
                    self.start += len;
                    break head;
                }
                Ok(Parsed::Interim(len)) => self.start += len,
                Ok(Parsed::Incomplete) => match self.fill().await {
                    Ok(0) | Err(_) if !any_answer && self.reused => {
                        return Err(Failure {
                            outcome: lost(
                                "the server closed the reused connection before answering",
                            ),
                            unsent: true,
                        })
                    }
                    Ok(0) => {
                        return Err(answer_lost(
                            "the server closed the connection before the whole response head",
                        ))
                    }
                    Err(e) => return Err(answer_lost(&format!("reading the response head: {e}"))),
                    Ok(_) => any_answer = true,
                },
                Err(malformed) => return Err(sent(malformed.outcome())),
            }
        };
        let mut framing = head.framing;
        if head.verdict.is_some() {
            // The head ended the call (an HTTP error, a trailers-only status): its body is
            // not waited for. When it is already here whole (a short error answer comes with
            // its head), it is dropped and the connection carries the next call, as a
            // browser's would; otherwise the connection stays closed.
            let whole = !framing.ends_at_close()
                && framing
                    .decode(&self.buf[self.start..self.end], &mut |_| Ok(()))
                    .is_ok_and(|d| {
                        self.start += d.used;
                        d.done
                    });
            if whole && head.keep_alive && self.start == self.end {
                self.closed = false;
                self.reused = true;
            }
            return Ok(Answer {
                verdict: head.verdict,
                framing,
            });
        }
        loop {
            // Also with nothing read: an empty body is whole at once.
            let decoded = framing
                .decode(&self.buf[self.start..self.end], sink)
                .map_err(|e| match e {
                    BodyError::Malformed(m) => sent(m.outcome()),
                    BodyError::Sink(o) => sent(o),
                })?;
            self.start += decoded.used;
            if decoded.done {
                break;
            }
            match self.fill().await {
                Ok(0) if framing.ends_at_close() => {
                    return Ok(Answer {
                        verdict: None,
                        framing,
                    })
                }
                Ok(0) => {
                    return Err(answer_lost(
                        "the server closed the connection before the whole response body",
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(answer_lost(&format!("reading the response body: {e}"))),
            }
        }
        // Bytes nobody asked for after the answer: the connection is not trusted again.
        self.closed = !head.keep_alive || self.start != self.end;
        self.reused = true;
        Ok(Answer {
            verdict: None,
            framing,
        })
    }

    /// Reads more into the buffer: makes room first (the bytes not used yet moved to its
    /// start, and it grows only while a head longer than it is still within bounds).
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() < READ_BUFFER {
            // Given back while idle (`shrink_idle`).
            self.buf.resize(READ_BUFFER, 0);
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                // Only a head can fill it (a body is used as it comes): room for one byte
                // past the bound, so the head parser says "too large".
                let grown = (self.buf.len() * 2).min(response::MAX_HEAD + READ_BUFFER);
                if grown == self.buf.len() {
                    // Not reached (the head parser refuses a head this long first); were it,
                    // a read into no room would look like the server's close.
                    return Err(std::io::Error::other(
                        "the response head fills the whole buffer",
                    ));
                }
                self.buf.resize(grown, 0);
            }
        }
        let n = self.io.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// Appends one header line of a request.
pub(crate) fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A failure of the connection, before the request was processed.
fn lost(why: &str) -> Outcome {
    let mut o = Outcome::failed(status::UNAVAILABLE, why.to_string());
    o.connection_failed = true;
    o
}

/// The connection failed after the request was sent.
fn answer_lost(why: &str) -> Failure {
    sent(lost(why))
}

fn sent(outcome: Outcome) -> Failure {
    Failure {
        outcome,
        unsent: false,
    }
}

#[cfg(test)]
mod tests;
