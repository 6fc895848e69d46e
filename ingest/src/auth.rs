//! Bearer-token authentication. In this version there is one token per deployment (the admin
//! token); it acts for the deployment's organisation.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use std::future::{Ready, ready};

use crate::error::ApiError;
use crate::state::ApiState;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The organisation the caller acts for.
    pub org_id: String,
    /// How the caller is recorded in the configuration log.
    pub actor: String,
}

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<ApiState>>() else {
            return ready(Err(ApiError::internal(
                "INTERNAL_ERROR",
                "API state missing",
            )));
        };
        let header = req
            .headers()
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim);
        ready(match token {
            None => Err(ApiError::unauthorized(
                "missing `Authorization: Bearer <token>` header",
            )),
            Some(token) if constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) => {
                Ok(Caller {
                    org_id: state.org_id.clone(),
                    actor: "admin-token".into(),
                })
            }
            Some(_) => Err(ApiError::unauthorized("invalid token")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
