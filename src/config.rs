//! Typed configuration, read once at start-up from the environment (and a `.env` file).
//! Every variable is documented in `.env.example`. Secrets are never logged.

use crate::auth::{DEFAULT_LEEWAY_SECONDS, JwtSettings, KeySource};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("set only one of JWT_SECRET, JWT_PUBLIC_KEY_FILE and JWT_JWKS_FILE")]
    SeveralKeySources,
}

/// Where token validation keys come from, as configured.
#[derive(Clone)]
pub enum JwtKeys {
    Secret(String),
    PublicKeyFile(PathBuf),
    JwksFile(PathBuf),
    /// Nothing configured: the server may generate a development secret (private cluster only).
    Unset,
}

#[derive(Clone)]
pub struct Config {
    /// `None`: run a private PostgreSQL cluster under `data_dir`.
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pub listen_addr: SocketAddr,
    pub database_max_connections: u32,
    /// Streams the server keeps to decide the next command on without reading (0: none).
    pub stream_cache_capacity: usize,
    /// Whether one tenant's concurrent writes may share a transaction (group commit).
    pub group_commit: bool,
    /// On Citus, whether a tenant's writes go straight to the worker holding it.
    pub citus_worker_writes: bool,
    pub jwt_keys: JwtKeys,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_leeway_seconds: u64,
    /// How long work waits for a pooled connection before the database counts as unavailable.
    pub database_acquire_timeout: Duration,
    /// Connections of the reports' own pool (reports, rebuilds, exports).
    pub report_connections: u32,
    /// A tenant's share of the pool: its commands and reads running at once (0: half the
    /// pool).
    pub tenant_concurrency: usize,
    /// A tenant's commands and reads waiting for a slot before more are refused.
    pub tenant_queue: usize,
    /// The longest a command or read waits for a slot.
    pub queue_timeout: Duration,
    /// A tenant's reports, rebuilds and exports running at once.
    pub tenant_report_concurrency: usize,
    /// How long a refusal for a full queue is held before it is answered.
    pub rate_limit_delay: Duration,
    /// Events per second delivered to one tenant's live subscriptions, all together.
    pub subscription_events_per_second: u32,
    pub subscriptions_per_caller: usize,
    pub subscriptions_per_tenant: usize,
    /// The longest a command runs (waiting included) before it is answered `TIMEOUT`.
    pub command_timeout: Duration,
    /// The longest a report or rebuild runs.
    pub report_timeout: Duration,
    /// The longest an export streams.
    pub export_timeout: Duration,
    /// A client has this long to send a request's headers, and again its body.
    pub http_header_timeout: Duration,
    pub http_body_timeout: Duration,
    /// Open HTTP connections (WebSockets included) beyond which new ones wait to be accepted.
    pub http_max_connections: usize,
    /// WebSocket: time to send `connection_init`, and operations per socket.
    pub ws_init_timeout: Duration,
    pub ws_max_operations: usize,
    /// When set, `/metrics` answers only with it as a bearer token.
    pub metrics_token: Option<String>,
    /// Serve the console from this folder instead of the binary (working on the console).
    pub console_dir: Option<PathBuf>,
    /// Trainees' data keys, wrapped by `DATA_KEY_ENCRYPTION_KEY` (32 bytes, base64) when set.
    pub data_keys: crate::crypto::Keyring,
    /// The system the trainees' xAPI accounts are on, and the base of the statements' IRIs.
    pub xapi_home_page: crate::xapi::HomePage,
}

/// A duration in humantime's syntax (`1500ms`, `10s`, `2m`).
fn duration(env: Env, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    match var(env, name) {
        None => Ok(default),
        Some(raw) => humantime::parse_duration(raw.trim()).map_err(|e| ConfigError::Invalid {
            name,
            reason: e.to_string(),
        }),
    }
}

/// Where settings are read from: the environment, or (for [`Config::defaults`]) nowhere.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(env: Env, name: &'static str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(env: Env, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(env, name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            }),
    }
}

impl Config {
    /// Reads the environment; call `dotenvy::dotenv()` first to include a `.env` file.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(&|name| std::env::var(name).ok())
    }

    /// Every setting at its default, whatever the environment says (tests, tools).
    pub fn defaults() -> Self {
        Self::read(&|_| None).expect("the defaults are valid")
    }

    fn read(env: Env) -> Result<Self, ConfigError> {
        let keys: Vec<JwtKeys> = [
            var(env, "JWT_SECRET").map(JwtKeys::Secret),
            var(env, "JWT_PUBLIC_KEY_FILE").map(|p| JwtKeys::PublicKeyFile(p.into())),
            var(env, "JWT_JWKS_FILE").map(|p| JwtKeys::JwksFile(p.into())),
        ]
        .into_iter()
        .flatten()
        .collect();
        if keys.len() > 1 {
            return Err(ConfigError::SeveralKeySources);
        }
        Ok(Self {
            database_url: var(env, "DATABASE_URL"),
            data_dir: var(env, "COURSETRAIL_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".coursetrail")),
            listen_addr: parsed(env, "LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            database_max_connections: parsed(env, "DATABASE_MAX_CONNECTIONS", 16)?,
            stream_cache_capacity: parsed(
                env,
                "STREAM_CACHE_CAPACITY",
                crate::app::DEFAULT_STREAM_CACHE_CAPACITY,
            )?,
            group_commit: parsed(env, "GROUP_COMMIT", true)?,
            citus_worker_writes: parsed(env, "CITUS_WORKER_WRITES", true)?,
            jwt_keys: keys.into_iter().next().unwrap_or(JwtKeys::Unset),
            jwt_issuer: var(env, "JWT_ISSUER").unwrap_or_else(|| "coursetrail".into()),
            jwt_audience: var(env, "JWT_AUDIENCE").unwrap_or_else(|| "coursetrail".into()),
            jwt_leeway_seconds: parsed(env, "JWT_LEEWAY_SECONDS", DEFAULT_LEEWAY_SECONDS)?,
            database_acquire_timeout: duration(
                env,
                "DATABASE_ACQUIRE_TIMEOUT",
                crate::db::DEFAULT_ACQUIRE_TIMEOUT,
            )?,
            report_connections: parsed(env, "DATABASE_REPORT_CONNECTIONS", 4)?,
            tenant_concurrency: parsed(env, "TENANT_CONCURRENCY", 0)?,
            tenant_queue: parsed(env, "TENANT_QUEUE", 64)?,
            queue_timeout: duration(env, "QUEUE_TIMEOUT", Duration::from_secs(2))?,
            tenant_report_concurrency: parsed(env, "TENANT_REPORT_CONCURRENCY", 1)?,
            rate_limit_delay: duration(
                env,
                "RATE_LIMIT_DELAY",
                crate::app::admission::DEFAULT_REFUSAL_DELAY,
            )?,
            subscription_events_per_second: parsed(env, "SUBSCRIPTION_EVENTS_PER_SECOND", 5_000)?,
            subscriptions_per_caller: parsed(env, "SUBSCRIPTIONS_PER_CALLER", 64)?,
            subscriptions_per_tenant: parsed(env, "SUBSCRIPTIONS_PER_TENANT", 2_000)?,
            command_timeout: duration(env, "COMMAND_TIMEOUT", Duration::from_secs(10))?,
            report_timeout: duration(env, "REPORT_TIMEOUT", Duration::from_secs(300))?,
            export_timeout: duration(env, "EXPORT_TIMEOUT", Duration::from_secs(3600))?,
            http_header_timeout: duration(env, "HTTP_HEADER_TIMEOUT", Duration::from_secs(10))?,
            http_body_timeout: duration(env, "HTTP_BODY_TIMEOUT", Duration::from_secs(10))?,
            http_max_connections: parsed(env, "HTTP_MAX_CONNECTIONS", 10_000)?,
            ws_init_timeout: duration(env, "WS_INIT_TIMEOUT", Duration::from_secs(10))?,
            ws_max_operations: parsed(env, "WS_MAX_OPERATIONS", 64)?,
            metrics_token: var(env, "METRICS_TOKEN"),
            console_dir: var(env, "CONSOLE_DIR").map(PathBuf::from),
            data_keys: match var(env, "DATA_KEY_ENCRYPTION_KEY") {
                None => crate::crypto::Keyring::unwrapped(),
                Some(raw) => {
                    crate::crypto::Keyring::from_base64(&raw).map_err(|e| ConfigError::Invalid {
                        name: "DATA_KEY_ENCRYPTION_KEY",
                        reason: e.to_string(),
                    })?
                }
            },
            xapi_home_page: match var(env, "XAPI_HOME_PAGE") {
                None => crate::xapi::HomePage::default(),
                Some(raw) => {
                    crate::xapi::HomePage::parse(&raw).map_err(|reason| ConfigError::Invalid {
                        name: "XAPI_HOME_PAGE",
                        reason,
                    })?
                }
            },
        })
    }

    /// The validation settings, given the secret to use when none is configured.
    pub fn jwt_settings(&self, fallback_secret: Option<&str>) -> Option<JwtSettings> {
        let keys = match &self.jwt_keys {
            JwtKeys::Secret(secret) => KeySource::Secret(secret.clone()),
            JwtKeys::PublicKeyFile(path) => KeySource::PublicKeyPem(path.clone()),
            JwtKeys::JwksFile(path) => KeySource::Jwks(path.clone()),
            JwtKeys::Unset => KeySource::Secret(fallback_secret?.to_owned()),
        };
        let mut settings = JwtSettings::new(keys, &self.jwt_issuer, &self.jwt_audience);
        settings.leeway_seconds = self.jwt_leeway_seconds;
        Some(settings)
    }

    /// The HS256 secret tokens can be minted with, if the configuration has one.
    pub fn database(&self) -> crate::db::DatabaseSettings {
        crate::db::DatabaseSettings {
            url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            max_connections: self.database_max_connections,
            report_connections: self.report_connections,
            acquire_timeout: self.database_acquire_timeout,
        }
    }

    pub fn hs256_secret(&self) -> Option<&str> {
        match &self.jwt_keys {
            JwtKeys::Secret(secret) => Some(secret),
            _ => None,
        }
    }
}
