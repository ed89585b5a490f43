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
        let mut rules: Vec<LifecycleRule> = match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => out.rules().to_vec(),
            Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") || is_not_found(&e) => {
                Vec::new()
            }
            Err(e) => return Err(classify(op, e)),
        };
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
        match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .rules()
                .iter()
                .find(|r| {
                    r.id() == Some(rule_id.as_str()) && r.status() == &ExpirationStatus::Enabled
                })
                .and_then(|r| r.expiration())
                .and_then(|e| e.days())
                .and_then(|d| u32::try_from(d).ok())),
            Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") || is_not_found(&e) => {
                Ok(None)
            }
            Err(e) => Err(classify("read the lifecycle rule", e)),
        }
    }
}

/// Lifecycle days that never delete a message before its expiry: the
/// longest expiry in whole days, plus one for S3's midnight rounding.
pub fn lifecycle_days_for(max_ttl: Duration) -> u32 {
    let day = 24 * 3600;
    u32::try_from(max_ttl.as_secs().div_ceil(day) + 1).unwrap_or(u32::MAX)
}
