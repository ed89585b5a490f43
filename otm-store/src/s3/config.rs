//! [`S3Config`] and its URL form, and the [`ClaimMethod`] choice.

use std::time::Duration;

use crate::url::{invalid_url, Query};
use crate::{Result, StoreError, StoreOptions};

/// How concurrent takers are narrowed to exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimMethod {
    /// Probe the server at connect time and use `ConditionalDelete` if it
    /// honours `If-Match` on `DeleteObject`, `ClaimObject` otherwise.
    Auto,
    /// `DeleteObject` with `If-Match` (Amazon S3 since 2025, moto, …).
    /// Connecting fails if the probe shows the server ignores it.
    ConditionalDelete,
    /// A claim marker written with `If-None-Match: *` before the delete.
    ClaimObject,
}

/// Settings for [`S3Store`](super::S3Store).
#[derive(Clone)]
#[non_exhaustive]
pub struct S3Config {
    /// Fixed credentials instead of the standard AWS provider chain (for
    /// local S3-compatible servers). `Debug` never prints the secret.
    pub static_credentials: Option<(String, String)>,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix for every object otm writes (e.g. `otm/`).
    pub prefix: String,
    /// Endpoint of an S3-compatible server; `None` for Amazon S3.
    pub endpoint: Option<String>,
    /// Region; `None` reads the standard AWS configuration (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most
    /// S3-compatible servers need.
    pub force_path_style: bool,
    /// How exactly one taker is chosen.
    pub claim_method: ClaimMethod,
    /// Create the bucket if it does not exist (for development servers).
    pub create_bucket: bool,
    /// Per-operation timeout. Default 10 s.
    pub timeout: Duration,
    /// Install (and verify) a lifecycle rule with this many days when
    /// connecting; see [`S3Store::install_lifecycle_rule`](super::S3Store::install_lifecycle_rule).
    pub lifecycle_days: Option<u32>,
    /// Accept a bucket with versioning enabled (URL `allow_versioning=true`).
    /// Off by default: a versioned bucket keeps every taken or burned
    /// envelope as a noncurrent version until a lifecycle rule removes
    /// noncurrent versions.
    pub allow_versioning: bool,
    /// Accept a bucket without a lifecycle rule that expires this prefix
    /// (URL `allow_no_lifecycle=true`) when `lifecycle_days` is not set.
    /// Off by default: without one, messages that are never opened stay in
    /// the bucket forever (never served, but stored).
    pub allow_no_lifecycle: bool,
    /// Whether an `http://` endpoint on another machine is allowed
    /// (URL `allow_unverified=true`). Off by default: `connect` refuses it
    /// (an endpoint on this machine is always allowed), since anyone on the
    /// path could read the ciphertext and verifiers or answer instead.
    pub allow_unverified: bool,
    /// Options every backend honours.
    pub options: StoreOptions,
}

impl S3Config {
    /// Defaults for a bucket and prefix on Amazon S3.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        S3Config {
            static_credentials: None,
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: None,
            region: None,
            force_path_style: false,
            claim_method: ClaimMethod::Auto,
            create_bucket: false,
            timeout: Duration::from_secs(10),
            lifecycle_days: None,
            allow_versioning: false,
            allow_no_lifecycle: false,
            allow_unverified: false,
            options: StoreOptions::default(),
        }
    }

    /// Parses `s3://BUCKET/PREFIX?endpoint=URL&region=R&path_style=true&create_bucket=true&claim=auto|conditional-delete|claim-object&lifecycle_days=N&allow_versioning=true&allow_no_lifecycle=true&allow_unverified=true`;
    /// any other parameter is an error naming it. Same as `url.parse()`.
    pub fn from_url(url: &str) -> Result<Self> {
        let (base, mut query) = Query::split(url, "S3")?;
        let location = base
            .strip_prefix("s3://")
            .ok_or_else(|| invalid_url("an S3 store URL starts with s3://"))?;
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(invalid_url("the S3 URL names no bucket"));
        }
        let mut config = S3Config::new(bucket, prefix);
        if let Some(endpoint) = query.take("endpoint") {
            // S3-compatible servers mostly need path style; path_style=false overrides.
            config = config.with_endpoint(endpoint);
        }
        if let Some(region) = query.take("region") {
            config.region = Some(region.to_owned());
        }
        if let Some(path_style) = query.flag("path_style")? {
            config.force_path_style = path_style;
        }
        if let Some(create) = query.flag("create_bucket")? {
            config.create_bucket = create;
        }
        if let Some(days) = query.parse::<u32>("lifecycle_days", "a whole number of days")? {
            if days == 0 {
                return Err(invalid_url(
                    "lifecycle_days takes a whole number of days above 0",
                ));
            }
            config.lifecycle_days = Some(days);
        }
        if let Some(allow) = query.flag("allow_versioning")? {
            config.allow_versioning = allow;
        }
        if let Some(allow) = query.flag("allow_no_lifecycle")? {
            config.allow_no_lifecycle = allow;
        }
        if let Some(allow) = query.flag("allow_unverified")? {
            config.allow_unverified = allow;
        }
        if let Some(claim) = query.take("claim") {
            config.claim_method = match claim {
                "auto" => ClaimMethod::Auto,
                "conditional-delete" => ClaimMethod::ConditionalDelete,
                "claim-object" => ClaimMethod::ClaimObject,
                other => {
                    return Err(invalid_url(format!(
                        "the S3 URL parameter `claim` takes auto, conditional-delete or claim-object, not `{other}`"
                    )))
                }
            }
        }
        query.finish()?;
        Ok(config)
    }

    /// Sets [`S3Config::lifecycle_days`] (at least 1).
    pub fn with_lifecycle_days(mut self, days: u32) -> Self {
        self.lifecycle_days = Some(days.max(1));
        self
    }

    /// Sets [`S3Config::allow_versioning`].
    pub fn with_allow_versioning(mut self, allow: bool) -> Self {
        self.allow_versioning = allow;
        self
    }

    /// Sets [`S3Config::allow_no_lifecycle`].
    pub fn with_allow_no_lifecycle(mut self, allow: bool) -> Self {
        self.allow_no_lifecycle = allow;
        self
    }

    /// Sets [`S3Config::allow_unverified`].
    pub fn with_allow_unverified(mut self, allow: bool) -> Self {
        self.allow_unverified = allow;
        self
    }

    /// Sets [`S3Config::endpoint`] and path-style addressing.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self.force_path_style = true;
        self
    }

    /// Uses fixed credentials (access key ID, secret) instead of the
    /// provider chain.
    pub fn with_static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.static_credentials = Some((access_key_id.into(), secret.into()));
        self
    }

    /// Sets [`S3Config::claim_method`].
    pub fn with_claim_method(mut self, method: ClaimMethod) -> Self {
        self.claim_method = method;
        self
    }

    /// Sets [`S3Config::create_bucket`].
    pub fn with_create_bucket(mut self, create: bool) -> Self {
        self.create_bucket = create;
        self
    }

    /// Sets [`S3Config::options`].
    pub fn with_options(mut self, options: StoreOptions) -> Self {
        self.options = options;
        self
    }
}

impl std::str::FromStr for S3Config {
    type Err = StoreError;
    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("force_path_style", &self.force_path_style)
            .field("claim_method", &self.claim_method)
            .field(
                "static_credentials",
                &self.static_credentials.as_ref().map(|(id, _)| (id, "..")),
            )
            .finish_non_exhaustive()
    }
}
