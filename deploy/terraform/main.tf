# An organization's audit setup in orgtrail, as code: one organization trail with digests, data
# events for the sensitive buckets, Insights, a member account, a CI token and an alert rule.
#
#   export ORGTRAIL_ENDPOINT=http://127.0.0.1:50051 ORGTRAIL_TOKEN=...   # e.g. from .orgtrail/dev.json
#   terraform plan && terraform apply
#
# Attribute reference: docs/terraform/.

terraform {
  required_providers {
    orgtrail = { source = "orgtrail/orgtrail" }
  }
}

provider "orgtrail" {}

variable "central_bucket" {
  description = "The central bucket every trail delivers to (orgtrail dev: the `bucket` of dev.json)."
  type        = string
  default     = "orgtrail-central"
}

variable "sensitive_buckets" {
  description = "Buckets whose object-level writes are logged as data events."
  type        = list(string)
  default     = ["payroll-exports", "customer-backups"]
}

data "orgtrail_organization" "this" {}

resource "orgtrail_account" "workloads" {
  account_id = "111111111111"
  name       = "workloads"
  email      = "cloud-team@example.com"
}

resource "orgtrail_trail" "organization" {
  name                        = "organization-trail"
  s3_bucket_name              = var.central_bucket
  is_organization_trail       = true
  log_file_validation_enabled = true
  tags                        = { owner = "security", managed_by = "terraform" }

  # A set: the order written here never shows up as a change.
  event_selectors = [
    { read_write_type = "All", include_management_events = true },
    {
      read_write_type           = "WriteOnly"
      include_management_events = false
      data_resources = [{
        type   = "AWS::S3::Object"
        values = [for b in var.sensitive_buckets : "arn:aws:s3:::${b}/"]
      }]
    },
  ]

  insight_selectors = [
    { insight_type = "ApiCallRateInsight" },
    { insight_type = "ApiErrorRateInsight" },
  ]
}

resource "orgtrail_token" "ci_auditor" {
  name = "ci-auditor"
  role = "ROLE_AUDITOR"
}

resource "orgtrail_alert_rule" "trail_tampering" {
  name        = "trail-tampering"
  description = "Someone stopped or deleted a CloudTrail trail"
  event_pattern = jsonencode({
    source = ["aws.cloudtrail"]
    detail = { eventName = ["StopLogging", "DeleteTrail", "UpdateTrail"] }
  })
}

data "orgtrail_trail_status" "organization" {
  name = orgtrail_trail.organization.name
}

output "organization_id" {
  value = data.orgtrail_organization.this.id
}

output "trail_arn" {
  value = orgtrail_trail.organization.trail_arn
}

output "trail_is_logging" {
  value = data.orgtrail_trail_status.organization.is_logging
}

output "ci_token" {
  value     = orgtrail_token.ci_auditor.secret
  sensitive = true
}
