//! The bucket lifecycle rule that removes this store's objects after a
//! number of days (the S3 store has no purge of its own).

use super::*;

impl S3Store {
    /// Installs (or updates) a lifecycle rule that makes S3 delete this
    /// store's objects `days` days after creation, and returns the days. S3
    /// counts whole days (objects go at the next midnight UTC after the
    /// period), so choose `days` at least one more than the longest expiry;
    /// [`lifecycle_days_for`] does that. Other rules in the bucket are kept.
    pub async fn install_lifecycle_rule(&self, days: u32) -> Result<u32> {
        let op = "install the lifecycle rule";
        if self.prefix.is_empty() {
            return Err(StoreError::Invalid {
                reason:
                    "refusing a lifecycle rule without a prefix: it would expire the whole bucket",
            });
        }
        let days = days.clamp(1, i32::MAX as u32);
        let rule_id = format!("{LIFECYCLE_RULE_PREFIX}:{}", self.prefix);
        let mut rules = self.lifecycle_rules(op).await?;
        rules.retain(|r| r.id() != Some(rule_id.as_str()));
        let ours = LifecycleRule::builder()
            .id(rule_id)
            .filter(LifecycleRuleFilter::builder().prefix(&self.prefix).build())
            .status(ExpirationStatus::Enabled)
            .expiration(LifecycleExpiration::builder().days(days as i32).build())
            .build()
            .map_err(|e| StoreError::Backend {
                op,
                source: Box::new(e),
            })?;
        rules.push(ours);
        let config = BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(|e| StoreError::Backend {
                op,
                source: Box::new(e),
            })?;
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(config)
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(days)
    }

    /// The expiration days of this store's lifecycle rule, if installed and enabled.
    pub async fn lifecycle_rule_days(&self) -> Result<Option<u32>> {
        let rule_id = format!("{LIFECYCLE_RULE_PREFIX}:{}", self.prefix);
        Ok(self
            .lifecycle_rules("read the lifecycle rule")
            .await?
            .iter()
            .find(|r| r.id() == Some(rule_id.as_str()) && r.status() == &ExpirationStatus::Enabled)
            .and_then(|r| r.expiration())
            .and_then(|e| e.days())
            .and_then(|d| u32::try_from(d).ok()))
    }
}

impl S3Store {
    /// Refuses a bucket with versioning enabled unless `allow`: every
    /// delete there leaves the ciphertext behind as a noncurrent version.
    /// A suspended versioning only warns (new objects are not versioned,
    /// older versions may remain).
    pub(super) async fn check_versioning(&self, allow: bool) -> Result<()> {
        let op = "read the bucket's versioning";
        let out = match self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if retryable(&e) => return Err(classify(op, e)),
            // Not allowed to look: fail closed. A versioned bucket would keep
            // every taken envelope, and nothing here could tell.
            Err(e) if !allow && (is_status(&e, 403) || e.code() == Some("AccessDenied")) => {
                return Err(StoreError::Invalid {
                    reason: "cannot read the bucket's versioning (access denied), so a \
                             versioned bucket that keeps every taken envelope cannot be ruled \
                             out: grant s3:GetBucketVersioning, or add allow_versioning=true",
                })
            }
            // Some S3-compatible servers answer this call in a form the SDK
            // does not read (moto answers an unversioned bucket with its own
            // root element): the check cannot be made there. Say so.
            Err(e) => {
                tracing::warn!(bucket = %self.bucket, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "cannot read the bucket's versioning; the versioned-bucket check is skipped");
                return Ok(());
            }
        };
        versioning_verdict(&self.bucket, out.status(), allow)
    }

    /// Whether an enabled lifecycle rule expires every object under this
    /// store's prefix (a rule whose prefix is a prefix of ours, with no tag
    /// or size condition).
    pub(super) async fn has_expiry_rule(&self) -> Result<bool> {
        let rules = self.lifecycle_rules("read the lifecycle rules").await?;
        Ok(rules.iter().any(|rule| covers(rule, &self.prefix)))
    }

    /// The bucket's lifecycle rules (none when it has no configuration).
    async fn lifecycle_rules(&self, op: &'static str) -> Result<Vec<LifecycleRule>> {
        match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out.rules().to_vec()),
            Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") || is_not_found(&e) => {
                Ok(Vec::new())
            }
            Err(e) => Err(classify(op, e)),
        }
    }
}

/// What a bucket's versioning `status` means for the store: a refusal for
/// an enabled one unless `allow`, a warning for a suspended one.
fn versioning_verdict(
    bucket: &str,
    status: Option<&BucketVersioningStatus>,
    allow: bool,
) -> Result<()> {
    match status {
        Some(BucketVersioningStatus::Enabled) if !allow => Err(StoreError::Misconfigured {
            reason: format!(
                "bucket {bucket} has versioning enabled: every taken or burned message would \
                 stay in it as a noncurrent version; use a bucket without versioning, or add a \
                 lifecycle rule that expires noncurrent versions and accept it with \
                 allow_versioning=true"
            ),
        }),
        Some(BucketVersioningStatus::Enabled) => {
            tracing::warn!(%bucket, "versioned bucket accepted (allow_versioning): deleted messages stay as noncurrent versions until a lifecycle rule removes them");
            Ok(())
        }
        Some(BucketVersioningStatus::Suspended) => {
            tracing::warn!(%bucket, "bucket versioning is suspended: versions written while it was enabled may remain");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether `rule` expires every object under `prefix`.
fn covers(rule: &LifecycleRule, prefix: &str) -> bool {
    if rule.status() != &ExpirationStatus::Enabled {
        return false;
    }
    let Some(expiration) = rule.expiration() else {
        return false;
    };
    if expiration.days().is_none() && expiration.date().is_none() {
        return false;
    }
    let rule_prefix = match rule.filter() {
        Some(f) => {
            if f.tag().is_some()
                || f.and().is_some()
                || f.object_size_greater_than().is_some()
                || f.object_size_less_than().is_some()
            {
                return false;
            }
            f.prefix().unwrap_or("")
        }
        #[allow(deprecated)]
        None => rule.prefix().unwrap_or(""),
    };
    prefix.starts_with(rule_prefix)
}

/// Lifecycle days that never delete a message before its expiry: the
/// longest expiry in whole days, plus one for S3's midnight rounding.
pub fn lifecycle_days_for(max_ttl: Duration) -> u32 {
    let day = 24 * 3600;
    u32::try_from(max_ttl.as_secs().div_ceil(day) + 1).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    // moto (the S3 server of the tests) answers GetBucketVersioning in a
    // form the SDK does not read, so the decision is tested here.
    #[test]
    fn versioned_buckets_are_refused_unless_allowed() {
        let enabled = BucketVersioningStatus::Enabled;
        match versioning_verdict("b", Some(&enabled), false) {
            Err(StoreError::Misconfigured { reason }) => {
                assert!(reason.contains("allow_versioning=true"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(versioning_verdict("b", Some(&enabled), true).is_ok());
        assert!(versioning_verdict("b", Some(&BucketVersioningStatus::Suspended), false).is_ok());
        assert!(versioning_verdict("b", None, false).is_ok());
    }

    #[test]
    fn only_an_enabled_expiring_rule_over_the_prefix_counts() {
        let rule = |prefix: &str, enabled: bool| {
            LifecycleRule::builder()
                .id("r")
                .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
                .status(if enabled {
                    ExpirationStatus::Enabled
                } else {
                    ExpirationStatus::Disabled
                })
                .expiration(LifecycleExpiration::builder().days(8).build())
                .build()
                .unwrap()
        };
        assert!(covers(&rule("otm/", true), "otm/run-1/"));
        assert!(covers(&rule("", true), "otm/"));
        assert!(!covers(&rule("other/", true), "otm/"));
        assert!(!covers(&rule("otm/", false), "otm/"));
    }
}
