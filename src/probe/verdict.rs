//! How a probe went, judged once for every caller: `loadagent probe` prints it and picks its
//! exit code from `failure`, the agent publishes it as series and `/api/v1/targets` rows.
//! The words are grpc-health-probe's where it has them.

use std::time::Duration;

use serde::Serialize;

use super::health::{status_name, HealthAnswer};
use super::method::{Verdict, IMPLICIT_STATUS_CHECK};
use crate::grpc::status;

/// Why a probe failed, in the kinds grpc-health-probe's exit codes tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made (or the server does not speak HTTP/2).
    Connect,
    /// The RPC failed: its status was not OK, or nothing answered in time.
    Rpc,
    /// The health service answered a status other than SERVING.
    NotServing,
    /// A method probe's call answered, and a check the user wrote failed (or the response
    /// did not decode).
    Check,
}

/// A health RPC's answer, judged.
#[derive(Debug, Clone)]
pub struct HealthVerdict {
    /// The serving status's name when the server gave one; `SERVICE_UNKNOWN` when it said
    /// NOT_FOUND (the service is not registered), as a Watch would.
    pub status: Option<&'static str>,
    /// The RPC's gRPC status code (0 when it answered).
    pub code: i32,
    /// What went wrong, and its kind; `None` when SERVING.
    pub failure: Option<(Failure, String)>,
}

impl HealthAnswer {
    /// The answer judged: SERVING passes, anything else fails with its reason.
    pub fn verdict(&self) -> HealthVerdict {
        match self {
            Self::Status(s) => {
                let name = status_name(*s);
                HealthVerdict {
                    status: Some(name),
                    code: 0,
                    failure: (!self.is_serving()).then(|| {
                        (
                            Failure::NotServing,
                            format!("service unhealthy (responded with \"{name}\")"),
                        )
                    }),
                }
            }
            Self::Failed(s) => HealthVerdict {
                status: (s.code() == tonic::Code::NotFound).then_some("SERVICE_UNKNOWN"),
                code: s.code() as i32,
                failure: Some((
                    Failure::Rpc,
                    format!("health rpc failed: {}: {}", s.code(), s.message()),
                )),
            },
            Self::Ended => HealthVerdict {
                status: None,
                code: i32::from(status::UNAVAILABLE),
                failure: Some((Failure::Rpc, "the health Watch stream ended".into())),
            },
            Self::NoAnswer(t) => HealthVerdict {
                status: None,
                code: i32::from(status::DEADLINE_EXCEEDED),
                // Worded as the RPC's own deadline is (tonic's timer and this one race).
                failure: Some((
                    Failure::Rpc,
                    format!(
                        "health rpc failed: {}: no health status within {t:?}",
                        tonic::Code::DeadlineExceeded
                    ),
                )),
            },
        }
    }
}

/// One `expect` check of a method probe and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    /// The check as written.
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Why it failed.
    pub reason: Option<String>,
}

/// A method probe's call, judged.
#[derive(Debug, Clone)]
pub struct MethodVerdict {
    /// Whether the response decoded and every check passed.
    pub passed: bool,
    /// The call's gRPC status code (UNAVAILABLE when no call could be made).
    pub code: u8,
    /// What failed, on one line, naming the method; `None` when it passed.
    pub failure: Option<(Failure, String)>,
    /// Every check, in order, and how it went.
    pub checks: Vec<CheckOutcome>,
}

impl MethodVerdict {
    /// The call's verdict, for `method` (its full name).
    pub fn of(method: &str, verdict: &Verdict) -> Self {
        let failure = verdict.failures().map(|f| {
            let name = status::code_name(verdict.code);
            let reason = if verdict.status_message.is_empty() {
                format!("method {method}: {name}: {f}")
            } else {
                format!("method {method}: {name} ({}): {f}", verdict.status_message)
            };
            // A failed call that only the implicit `status == OK` caught is an RPC failure,
            // as grpc-health-probe reports one; anything the user's checks caught is a
            // failed check.
            let only_implicit = verdict.decode_error.is_none()
                && verdict
                    .checks
                    .iter()
                    .all(|(c, why)| why.is_none() || c == IMPLICIT_STATUS_CHECK);
            let kind = if only_implicit && verdict.code != status::OK {
                Failure::Rpc
            } else {
                Failure::Check
            };
            (kind, reason)
        });
        Self {
            passed: verdict.passed(),
            code: verdict.code,
            failure,
            checks: verdict
                .checks
                .iter()
                .map(|(check, why)| CheckOutcome {
                    check: check.clone(),
                    passed: why.is_none(),
                    reason: why.clone(),
                })
                .collect(),
        }
    }

    /// No call could be made, for `why` (of kind `kind`, with gRPC code `code`): every one
    /// of `checks` failed for that reason.
    pub fn not_called(checks: Vec<String>, kind: Failure, code: u8, why: &str) -> Self {
        Self {
            passed: false,
            code,
            failure: Some((kind, why.to_string())),
            checks: checks
                .into_iter()
                .map(|check| CheckOutcome {
                    check,
                    passed: false,
                    reason: Some(why.to_string()),
                })
                .collect(),
        }
    }
}

/// The time each phase of a probe took, in order (`connect`, `tls`, `check`, `method`).
pub type Phases = Vec<(&'static str, Duration)>;

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::pb::health_check_response::ServingStatus;

    #[test]
    fn health_answers_are_judged_in_grpc_health_probes_words() {
        let serving = HealthAnswer::Status(ServingStatus::Serving as i32).verdict();
        assert_eq!(serving.status, Some("SERVING"));
        assert!(serving.failure.is_none());
        let not = HealthAnswer::Status(ServingStatus::NotServing as i32).verdict();
        assert_eq!(
            not.failure,
            Some((
                Failure::NotServing,
                "service unhealthy (responded with \"NOT_SERVING\")".into()
            ))
        );
        let unknown = HealthAnswer::Failed(tonic::Status::not_found("x")).verdict();
        assert_eq!(unknown.status, Some("SERVICE_UNKNOWN"));
        assert_eq!(unknown.code, 5);
        assert_eq!(unknown.failure.map(|f| f.0), Some(Failure::Rpc));
        let late = HealthAnswer::NoAnswer(Duration::from_secs(1)).verdict();
        assert_eq!(late.code, 4);
        let said = late.failure.unwrap().1;
        let deadline = HealthAnswer::Failed(tonic::Status::deadline_exceeded("x")).verdict();
        let prefix = |s: &str| s.split(": ").take(2).collect::<Vec<_>>().join(": ");
        assert_eq!(
            prefix(&said),
            prefix(&deadline.failure.unwrap().1),
            "{said}"
        );
    }

    fn verdict(code: u8, checks: &[(&str, Option<&str>)]) -> Verdict {
        Verdict {
            code,
            status_message: String::new(),
            took: Duration::ZERO,
            checks: checks
                .iter()
                .map(|(c, w)| (c.to_string(), w.map(str::to_string)))
                .collect(),
            response: None,
            decode_error: None,
            reusable: true,
            not_processed: false,
        }
    }

    #[test]
    fn a_call_only_the_implicit_status_check_caught_is_an_rpc_failure() {
        let v = verdict(14, &[(IMPLICIT_STATUS_CHECK, Some("UNAVAILABLE"))]);
        let judged = MethodVerdict::of("p.S/M", &v);
        assert!(!judged.passed);
        let (kind, reason) = judged.failure.unwrap();
        assert_eq!(kind, Failure::Rpc);
        assert!(
            reason.starts_with("method p.S/M: UNAVAILABLE: "),
            "{reason}"
        );
        let v = verdict(
            0,
            &[
                (IMPLICIT_STATUS_CHECK, None),
                ("name == \"x\"", Some("it is \"y\"")),
            ],
        );
        let judged = MethodVerdict::of("p.S/M", &v);
        assert_eq!(judged.failure.unwrap().0, Failure::Check);
        assert_eq!(judged.checks.len(), 2);
        assert!(judged.checks[0].passed && !judged.checks[1].passed);
        let ok = MethodVerdict::of("p.S/M", &verdict(0, &[(IMPLICIT_STATUS_CHECK, None)]));
        assert!(ok.passed && ok.failure.is_none());
    }
}
