//! SNS: publishes delivery notifications to trails' topics with orgtrail's own AWS credentials
//! (CloudTrail publishes as its service principal; the topic's policy must allow orgtrail's).

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_sns::error::{DisplayErrorContext, ProvideErrorMetadata};

use crate::model::sns::SnsTopic;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SnsError(pub String);

/// One client per topic region, made on first use.
#[derive(Clone)]
pub struct SnsSink {
    base: Option<SdkConfig>,
    clients: Arc<tokio::sync::Mutex<HashMap<String, aws_sdk_sns::Client>>>,
}

impl SnsSink {
    /// `base` carries orgtrail's own AWS credentials and endpoints (`AWS_ENDPOINT_URL_SNS`, ...);
    /// None: no AWS configured, every publish fails with that reason.
    pub fn new(base: Option<SdkConfig>) -> Self {
        Self { base, clients: Default::default() }
    }

    async fn client(&self, region: &str) -> Result<aws_sdk_sns::Client, SnsError> {
        let Some(base) = &self.base else {
            return Err(SnsError(
                "no AWS configuration in this worker (set the standard AWS environment)".into(),
            ));
        };
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(region) {
            return Ok(client.clone());
        }
        let config = aws_sdk_sns::config::Builder::from(base)
            .region(aws_config::Region::new(region.to_owned()))
            .build();
        let client = aws_sdk_sns::Client::from_conf(config);
        clients.insert(region.to_owned(), client.clone());
        Ok(client)
    }

    /// Publishes `message` to `topic` (in the topic's region).
    pub async fn publish(&self, topic: &SnsTopic, message: &str) -> Result<(), SnsError> {
        let region = topic
            .region()
            .ok_or_else(|| SnsError(format!("the topic ARN {} names no region", topic.arn())))?;
        let client = self.client(region).await?;
        match client.publish().topic_arn(topic.arn()).message(message).send().await {
            Ok(_) => Ok(()),
            Err(error) => {
                let detail = match error.as_service_error() {
                    Some(service) => format!(
                        "{}: {}",
                        service.code().unwrap_or("error"),
                        service.message().unwrap_or("(no message)")
                    ),
                    None => DisplayErrorContext(&error).to_string(),
                };
                Err(SnsError(format!("Publish to {}: {detail}", topic.arn())))
            }
        }
    }
}
