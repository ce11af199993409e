//! The Bench service: each request says how it wants to be answered.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::pb::{bench_server::Bench, BenchRequest, BenchResponse};

/// Largest response payload the target sends.
const MAX_PAYLOAD: usize = 4 << 20;

/// The zeros every payload is a slice of (a reference count, no copy). Made at the first
/// call, not a `static` array: an immutable array is stored in the binary itself — 4 MiB of
/// the stripped 26 (issue 28) — whereas this is zero pages the kernel maps on demand.
fn zeros() -> &'static Bytes {
    static ZEROS: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    ZEROS.get_or_init(|| Bytes::from(vec![0u8; MAX_PAYLOAD]))
}

/// Stateless: everything a call needs is in its request.
#[derive(Debug, Clone, Copy, Default)]
pub struct BenchService;

/// The answer a request asks for, checked once.
struct Answer {
    payload: Bytes,
    delay: Duration,
    error: Option<Status>,
}

impl Answer {
    fn for_request(req: &BenchRequest) -> Result<Self, Status> {
        let size = req.payload_size as usize;
        if size > MAX_PAYLOAD {
            return Err(Status::invalid_argument(format!(
                "payload_size {size} is larger than the reference target's limit of {MAX_PAYLOAD} bytes"
            )));
        }
        let error = (req.error_code != 0).then(|| {
            Status::new(
                tonic::Code::from_i32(req.error_code as i32),
                req.error_message.clone(),
            )
        });
        Ok(Self {
            payload: zeros().slice(..size),
            delay: Duration::from_millis(u64::from(req.delay_ms)),
            error,
        })
    }

    async fn respond(&self, sequence: u64) -> Result<BenchResponse, Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some(status) = &self.error {
            return Err(status.clone());
        }
        Ok(BenchResponse {
            payload: self.payload.clone(),
            sequence,
        })
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<BenchResponse, Status>> + Send>>;

/// Depth of the per-stream response queue: enough to keep a fast stream busy.
const STREAM_QUEUE: usize = 16;

#[tonic::async_trait]
impl Bench for BenchService {
    async fn unary(
        &self,
        request: Request<BenchRequest>,
    ) -> Result<Response<BenchResponse>, Status> {
        let answer = Answer::for_request(request.get_ref())?;
        answer.respond(0).await.map(Response::new)
    }

    type ServerStreamStream = ResponseStream;

    async fn server_stream(
        &self,
        request: Request<BenchRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let req = request.into_inner();
        let answer = Answer::for_request(&req)?;
        let count = u64::from(req.response_count);
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(async move {
            let mut sequence = 0;
            while count == 0 || sequence < count {
                let item = answer.respond(sequence).await;
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break; // the client went away, or the stream ended with an error
                }
                sequence += 1;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<BenchRequest>>,
    ) -> Result<Response<BenchResponse>, Status> {
        let mut incoming = request.into_inner();
        let mut last = BenchRequest::default();
        let mut received = 0u64;
        while let Some(req) = incoming.next().await {
            last = req?;
            received += 1;
        }
        let answer = Answer::for_request(&last)?;
        answer.respond(received).await.map(Response::new)
    }

    type BidiStreamStream = ResponseStream;

    async fn bidi_stream(
        &self,
        request: Request<Streaming<BenchRequest>>,
    ) -> Result<Response<Self::BidiStreamStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(async move {
            let mut sequence = 0;
            while let Some(req) = incoming.next().await {
                let item = match req.and_then(|r| Answer::for_request(&r)) {
                    Ok(answer) => answer.respond(sequence).await,
                    Err(status) => Err(status),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
                sequence += 1;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
