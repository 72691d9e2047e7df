//! API errors: every failure becomes an [`ApiError`] JSON body with a
//! status code that says whose fault it is. A failed write also says
//! whether it may still take effect ([`WriteOutcome`]): 504 with
//! `outcome: unknown` when it was proposed but not confirmed (a status
//! forwarding does not retry), never a plain failure.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use skein_protocol::api::{ApiError, WriteOutcome};
use skein_protocol::spec::SpecError;

use crate::control::{ControlError, PlanError};

/// An error response.
#[derive(Debug)]
pub struct ApiErr {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: ApiError,
}

impl ApiErr {
    /// An error with `status` and a one-line message.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ApiError {
                error: error.into(),
                details: Vec::new(),
                outcome: None,
            },
        }
    }

    /// 422 with per-field problems.
    pub fn invalid(error: impl Into<String>, details: Vec<SpecError>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ApiError {
                error: error.into(),
                details,
                outcome: None,
            },
        }
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }
}

impl From<ControlError> for ApiErr {
    fn from(e: ControlError) -> Self {
        let (status, outcome) = match &e {
            ControlError::Plan(PlanError::UnknownJob(_)) => {
                (StatusCode::NOT_FOUND, WriteOutcome::NotApplied)
            }
            ControlError::Plan(PlanError::Unplaceable(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, WriteOutcome::NotApplied)
            }
            ControlError::Plan(PlanError::Refused(_)) | ControlError::Rejected(_) => {
                (StatusCode::CONFLICT, WriteOutcome::NotApplied)
            }
            ControlError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, WriteOutcome::NotApplied),
            ControlError::NotLeader { .. }
            | ControlError::Unavailable(_)
            | ControlError::StorageDegraded(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, WriteOutcome::NotApplied)
            }
            ControlError::OutcomeUnknown(_) => (StatusCode::GATEWAY_TIMEOUT, WriteOutcome::Unknown),
        };
        let mut err = Self::new(status, e.to_string());
        err.body.outcome = Some(outcome);
        err
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
