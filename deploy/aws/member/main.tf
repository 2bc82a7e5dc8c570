# A member account's collector role, as `orgtrail bootstrap` creates it: trusted by orgtrail's
# workers only with the enrollment's ExternalId; LookupEvents and read of the account's own files
# in its trail bucket. Run with the member account's credentials; the role name must stay
# orgtrail-collector (the workers' policy allows assuming that name).

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {}

variable "aggregator_principal_arn" {
  description = "The workers' role (output worker_role_arn of the central example)."
  type        = string
}

variable "external_id" {
  description = "The ExternalId `orgtrail accounts enroll` printed for this account."
  type        = string
}

variable "trail_bucket" {
  description = "This account's own CloudTrail bucket to read; empty: LookupEvents only."
  type        = string
  default     = ""
}

variable "trail_prefix" {
  description = "Key prefix before AWSLogs/ in trail_bucket; empty: none."
  type        = string
  default     = ""
}

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

module "policies" {
  source = "../policies"

  partition                = data.aws_partition.current.partition
  member_account_id        = data.aws_caller_identity.current.account_id
  aggregator_principal_arn = var.aggregator_principal_arn
  external_id              = var.external_id
  member_trail_bucket      = var.trail_bucket
  member_trail_prefix      = var.trail_prefix
  # The central-bucket inputs are not used by the collector's documents.
  bucket_name     = "unused"
  organization_id = "unused"
  trail_arns      = []
  writer_role_arn = var.aggregator_principal_arn
}

resource "aws_iam_role" "collector" {
  name               = "orgtrail-collector"
  assume_role_policy = module.policies.collector_trust_policy
}

resource "aws_iam_role_policy" "collector" {
  name   = "orgtrail-collector"
  role   = aws_iam_role.collector.id
  policy = module.policies.collector_policy
}

output "role_arn" {
  description = "The collector role (the account's pull settings name it)."
  value       = aws_iam_role.collector.arn
}
