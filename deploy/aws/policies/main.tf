# The IAM documents of an orgtrail deployment on AWS, as data: no provider, no resources, so
# `terraform validate` and `terraform apply` check and render them offline (tests/deploy.rs does).
# The collector documents are the ones `orgtrail bootstrap` creates (src/members/iam_policy.rs).

variable "partition" {
  description = "AWS partition: aws, aws-cn or aws-us-gov."
  type        = string
  default     = "aws"
}

variable "bucket_name" {
  description = "The central bucket orgtrail's workers deliver to (and CloudTrail trails may write to)."
  type        = string
}

variable "organization_id" {
  description = "The AWS Organizations ID (o-...): an organization trail writes under AWSLogs/<org id>/."
  type        = string
}

variable "account_ids" {
  description = "Accounts whose own trails write AWSLogs/<account>/ in the central bucket."
  type        = list(string)
  default     = []
}

variable "trail_arns" {
  description = "ARNs of the CloudTrail trails allowed to write (the aws:SourceArn of their requests)."
  type        = list(string)
}

variable "writer_role_arn" {
  description = "The IAM role orgtrail's workers run as (they write log and digest files)."
  type        = string
}

variable "member_account_id" {
  description = "A member account, for its collector role's documents."
  type        = string
}

variable "aggregator_principal_arn" {
  description = "The principal orgtrail's collectors run as; the only one the collector role trusts."
  type        = string
}

variable "external_id" {
  description = "The enrollment's ExternalId (`orgtrail accounts enroll` prints it)."
  type        = string
}

variable "lookup_events" {
  description = "Whether the collector pulls the member's events with cloudtrail:LookupEvents."
  type        = bool
  default     = true
}

variable "member_trail_bucket" {
  description = "The member's own CloudTrail bucket the collector reads; empty: none."
  type        = string
  default     = ""
}

variable "member_trail_prefix" {
  description = "Key prefix before AWSLogs/ in the member's trail bucket, without slashes; empty: none."
  type        = string
  default     = ""
}

locals {
  bucket_arn = "arn:${var.partition}:s3:::${var.bucket_name}"
  # CloudTrail's own layout: AWSLogs/<org id>/ for organization trails, AWSLogs/<account>/ otherwise.
  cloudtrail_prefixes = concat(
    ["${local.bucket_arn}/AWSLogs/${var.organization_id}/*"],
    [for account in var.account_ids : "${local.bucket_arn}/AWSLogs/${account}/*"],
  )
  member_prefix     = trim(var.member_trail_prefix, "/")
  member_key_prefix = local.member_prefix == "" ? "AWSLogs/${var.member_account_id}/" : "${local.member_prefix}/AWSLogs/${var.member_account_id}/"

  # The central bucket's policy, as CloudTrail documents it, plus orgtrail's writer role. The
  # aws:SourceArn conditions keep other accounts' trails from writing here (confused deputy).
  bucket_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AWSCloudTrailAclCheck"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = "s3:GetBucketAcl"
        Resource  = local.bucket_arn
        Condition = { StringEquals = { "aws:SourceArn" = var.trail_arns } }
      },
      {
        Sid       = "AWSCloudTrailWrite"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = local.cloudtrail_prefixes
        Condition = {
          StringEquals = {
            "s3:x-amz-acl"  = "bucket-owner-full-control"
            "aws:SourceArn" = var.trail_arns
          }
        }
      },
      {
        Sid       = "OrgtrailWorkersWrite"
        Effect    = "Allow"
        Principal = { AWS = var.writer_role_arn }
        Action    = ["s3:PutObject", "s3:GetObject"]
        Resource  = "${local.bucket_arn}/*"
      },
      {
        Sid       = "OrgtrailWorkersList"
        Effect    = "Allow"
        Principal = { AWS = var.writer_role_arn }
        Action    = ["s3:ListBucket", "s3:GetBucketLocation"]
        Resource  = local.bucket_arn
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [local.bucket_arn, "${local.bucket_arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  }

  # The workers' own permissions (identity policy of the writer role).
  writer_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "WriteTrailFiles"
        Effect   = "Allow"
        Action   = ["s3:PutObject", "s3:GetObject"]
        Resource = "${local.bucket_arn}/*"
      },
      {
        Sid      = "ListCentralBucket"
        Effect   = "Allow"
        Action   = ["s3:ListBucket", "s3:GetBucketLocation"]
        Resource = local.bucket_arn
      },
      {
        Sid      = "AssumeCollectorRoles"
        Effect   = "Allow"
        Action   = "sts:AssumeRole"
        Resource = "arn:${var.partition}:iam::*:role/orgtrail-collector"
      },
    ]
  }

  # As RolePlan::trust_policy: only the aggregator, only with this enrollment's ExternalId.
  collector_trust_policy = {
    Version = "2012-10-17"
    Statement = [{
      Sid       = "OrgtrailCollector"
      Effect    = "Allow"
      Principal = { AWS = var.aggregator_principal_arn }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "sts:ExternalId" = var.external_id } }
    }]
  }

  # As RolePlan::inline_policy: LookupEvents, and read of the account's own prefix of its trail bucket.
  collector_policy = {
    Version = "2012-10-17"
    Statement = concat(
      # `[for ... if]` rather than `cond ? [...] : []`: the two arms' tuple types differ.
      [for statement in [{
        Sid      = "LookupEvents"
        Effect   = "Allow"
        Action   = "cloudtrail:LookupEvents"
        Resource = "*"
      }] : statement if var.lookup_events],
      [for statement in [
        {
          Sid      = "ReadTrailObjects"
          Effect   = "Allow"
          Action   = "s3:GetObject"
          Resource = "arn:${var.partition}:s3:::${var.member_trail_bucket}/${local.member_key_prefix}*"
        },
        {
          Sid       = "ListTrailPrefix"
          Effect    = "Allow"
          Action    = "s3:ListBucket"
          Resource  = "arn:${var.partition}:s3:::${var.member_trail_bucket}"
          Condition = { StringLike = { "s3:prefix" = "${local.member_key_prefix}*" } }
        },
      ] : statement if var.member_trail_bucket != ""],
    )
  }
}

output "bucket_policy" {
  description = "Policy of the central bucket (JSON)."
  value       = jsonencode(local.bucket_policy)
}

output "writer_policy" {
  description = "Identity policy of the workers' role (JSON)."
  value       = jsonencode(local.writer_policy)
}

output "collector_trust_policy" {
  description = "Trust policy of a member's collector role (JSON)."
  value       = jsonencode(local.collector_trust_policy)
}

output "collector_policy" {
  description = "Inline policy `orgtrail-collector` of a member's collector role (JSON)."
  value       = jsonencode(local.collector_policy)
}
