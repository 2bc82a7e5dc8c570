# orgtrail's AWS side in the central (log archive) account: the central bucket with a
# CloudTrail-style policy, and the IAM role orgtrail's workers run as. Member accounts' collector
# roles: see member/. The documents themselves live in policies/ (checked offline by the tests).
#
#   terraform init && terraform apply -var organization_id=o-... -var 'trail_arns=[...]' ...

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "Region of the central bucket."
  type        = string
  default     = "us-east-1"
}

variable "bucket_name" {
  description = "Name of the central bucket (orgtrail's trails deliver here)."
  type        = string
}

variable "organization_id" {
  description = "The AWS Organizations ID (o-...)."
  type        = string
}

variable "account_ids" {
  description = "Accounts whose own CloudTrail trails may also write here."
  type        = list(string)
  default     = []
}

variable "trail_arns" {
  description = "CloudTrail trails allowed to write (aws:SourceArn)."
  type        = list(string)
}

variable "worker_trusted_principal_arn" {
  description = "Who may assume the workers' role, e.g. the EKS node role or an IRSA-federated role."
  type        = string
}

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  writer_role_name = "orgtrail-worker"
  writer_role_arn  = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/${local.writer_role_name}"
}

module "policies" {
  source = "./policies"

  partition       = data.aws_partition.current.partition
  bucket_name     = var.bucket_name
  organization_id = var.organization_id
  account_ids     = var.account_ids
  trail_arns      = var.trail_arns
  writer_role_arn = local.writer_role_arn
  # Only the central documents are used here; member/ renders the collector's.
  member_account_id        = data.aws_caller_identity.current.account_id
  aggregator_principal_arn = local.writer_role_arn
  external_id              = "unused"
}

resource "aws_s3_bucket" "central" {
  bucket = var.bucket_name
}

resource "aws_s3_bucket_public_access_block" "central" {
  bucket                  = aws_s3_bucket.central.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "central" {
  bucket = aws_s3_bucket.central.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_policy" "central" {
  bucket     = aws_s3_bucket.central.id
  policy     = module.policies.bucket_policy
  depends_on = [aws_s3_bucket_public_access_block.central]
}

# The role orgtrail's workers (and collectors, which run in them) use: it writes the central
# bucket and assumes the members' orgtrail-collector roles. Set it as aggregator_principal_arn.
resource "aws_iam_role" "worker" {
  name = local.writer_role_name
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = var.worker_trusted_principal_arn }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "worker" {
  name   = "orgtrail-worker"
  role   = aws_iam_role.worker.id
  policy = module.policies.writer_policy
}

output "worker_role_arn" {
  description = "ORGTRAIL_AGGREGATOR_PRINCIPAL_ARN, and the role the workers run as."
  value       = aws_iam_role.worker.arn
}

output "bucket" {
  description = "The central bucket, for trails' S3BucketName."
  value       = aws_s3_bucket.central.bucket
}
