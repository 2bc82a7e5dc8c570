//! The CloudWatch Logs stream: each event a trail takes, as a log event in the trail's log group.

pub mod tap;
