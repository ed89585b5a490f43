//! What the server can do: creating the bucket on request, and the
//! connect-time probe of its conditional requests that settles the claim
//! method.

use super::*;

impl S3Store {
    pub(super) async fn create_bucket(&self) -> Result<()> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(classify("create the bucket", e)),
        }
    }

    /// Checks that the server honours `If-None-Match: *` on PutObject (else
    /// refuses) and whether it honours `If-Match` on DeleteObject.
    pub(super) async fn probe(&self, wanted: ClaimMethod) -> Result<ClaimMethod> {
        let key = format!("{}.otm-probe-{}", self.prefix, random_hex()?);
        let op = "probe the server's conditional requests";
        let first = self
            .put_if_absent(&key, Vec::new(), &[])
            .await
            .map_err(|e| e.into_store(op))?;
        let etag = first.ok_or(StoreError::Backend {
            op,
            source: "the probe object already existed".into(),
        })?;
        let second = self
            .put_if_absent(&key, b"x".to_vec(), &[])
            .await
            .map_err(|e| e.into_store(op))?;
        if second.is_some() {
            let _ = self.delete_request(&key).send().await;
            return Err(StoreError::NotImplemented {
                what: "the S3 server ignores If-None-Match on PutObject; otm cannot keep messages safely on it",
            });
        }
        if wanted == ClaimMethod::ClaimObject {
            let _ = self.delete_request(&key).send().await;
            return Ok(ClaimMethod::ClaimObject);
        }
        // A wrong ETag must be refused and leave the object; once deleted, a
        // conditional delete must not report success again.
        let wrong = self
            .delete_request(&key)
            .if_match("\"00000000000000000000000000000000\"")
            .send()
            .await;
        let honours_wrong = match wrong {
            Err(e) if is_status(&e, 412) => true,
            // Deleted, or refused with something other than "precondition
            // failed": either way not a conditional delete to rely on.
            _ => false,
        };
        let still_there = self.head_request(&key).send().await.is_ok();
        let _ = self.delete_request(&key).if_match(&etag).send().await;
        let again = self.delete_request(&key).if_match(&etag).send().await;
        let honours_missing = matches!(&again, Err(e) if is_status(e, 404) || is_status(e, 412));
        let _ = self.delete_request(&key).send().await;
        let honoured = honours_wrong && still_there && honours_missing;
        match (wanted, honoured) {
            (_, true) => Ok(ClaimMethod::ConditionalDelete),
            (ClaimMethod::ConditionalDelete, false) => Err(StoreError::NotImplemented {
                what: "the S3 server ignores If-Match on DeleteObject; use claim=claim-object (or auto)",
            }),
            _ => {
                tracing::warn!(
                    bucket = %self.bucket,
                    "S3 server ignores If-Match on DeleteObject; using claim objects for exactly-once takes"
                );
                Ok(ClaimMethod::ClaimObject)
            }
        }
    }
}
