//! API errors: every failure becomes an [`ApiError`] JSON body with a
//! status code that says whose fault it is.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use skein_protocol::api::ApiError;
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
        let status = match &e {
            ControlError::Plan(PlanError::UnknownJob(_)) => StatusCode::NOT_FOUND,
            ControlError::Plan(PlanError::Unplaceable(_) | PlanError::Invalid(_)) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ControlError::Plan(PlanError::Refused(_)) => StatusCode::CONFLICT,
            ControlError::Rejected(_) => StatusCode::CONFLICT,
            ControlError::NotLeader { .. } | ControlError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
