//! The client of an external Confluent-compatible schema registry (`--schema-registry-url`),
//! through `schema_registry_converter`'s async registry calls. The registry of another
//! erp-toolkit (`…/schema-registry` on its API listener) is one too.

use futures::FutureExt;
use futures::future::BoxFuture;
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use crate::error::RuntimeError;
use crate::wire::SchemaSource;

/// How to authenticate to the registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No credentials.
    #[default]
    None,
    /// HTTP basic auth (Confluent Cloud: API key and secret; erp-toolkit: any user, the token).
    Basic { user: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl std::fmt::Debug for RegistryAuth {
    /// Names the kind of credentials, never a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Basic { .. } => "Basic",
            Self::Bearer(_) => "Bearer",
        })
    }
}

/// An external registry.
pub struct ExternalRegistry {
    settings: SrSettings,
}

impl ExternalRegistry {
    /// A client of the registry at `url` (`http://host:8081`, or a base path such as
    /// `http://api:8080/schema-registry`).
    pub fn new(url: &str, auth: &RegistryAuth) -> Result<Self, RuntimeError> {
        let mut builder = SrSettings::new_builder(url.trim_end_matches('/').to_owned());
        match auth {
            RegistryAuth::None => {}
            RegistryAuth::Basic { user, password } => {
                builder.set_basic_authorization(user, Some(password));
            }
            RegistryAuth::Bearer(token) => {
                builder.set_token_authorization(token);
            }
        }
        let settings = builder
            .set_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| RuntimeError::Setting(format!("--schema-registry-url: {}", e.error)))?;
        Ok(Self { settings })
    }
}

/// A refusal (4xx) is the registry's answer; anything else may pass (unreachable, 5xx).
fn error(error: SRCError) -> RuntimeError {
    let text = match &error.cause {
        Some(cause) => format!("{}: {cause}", error.error),
        None => error.error.clone(),
    };
    let refused = !error.retriable && text.contains("status 4");
    if refused {
        erp_schemas::SchemaError::Wire(text).into()
    } else {
        RuntimeError::RegistryUnavailable(text)
    }
}

impl SchemaSource for ExternalRegistry {
    fn register<'a>(
        &'a self,
        subject: &'a str,
        schema: &'a str,
    ) -> BoxFuture<'a, Result<u32, RuntimeError>> {
        async move {
            let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_owned());
            post_schema(&self.settings, subject.to_owned(), supplied)
                .await
                .map(|registered| registered.id)
                .map_err(error)
        }
        .boxed()
    }

    fn schema_by_id(&self, id: u32) -> BoxFuture<'_, Result<String, RuntimeError>> {
        async move {
            get_schema_by_id(id, &self.settings)
                .await
                .map(|registered| registered.schema)
                .map_err(error)
        }
        .boxed()
    }
}
