//! Identifier newtypes. Each `parse` takes the API field name so its error names the field.

use std::fmt;
use std::net::Ipv4Addr;

use super::FieldError;

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);
string_newtype!(AccountId);

impl AccountId {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(FieldError::new(field, format!("must be a 12-digit account id, got {value:?}")))
        }
    }
}

/// An organization id: `o-` followed by 10 to 32 lowercase letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrganizationId(String);
string_newtype!(OrganizationId);

impl OrganizationId {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let ok = value.strip_prefix("o-").is_some_and(|rest| {
            (10..=32).contains(&rest.len())
                && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                format!("must be \"o-\" followed by 10 to 32 lowercase letters or digits, got {value:?}"),
            ))
        }
    }

    /// A fresh random id with a 10-character suffix, as AWS Organizations makes them.
    pub fn generate() -> Self {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let suffix: String = (0..10).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
        Self(format!("o-{suffix}"))
    }
}

/// A region name. Any syntactically valid name is accepted (lowercase letters, digits and inner
/// hyphens, at most 64 characters), because anonymized real logs carry invented regions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(String);
string_newtype!(Region);

impl Region {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let bytes = value.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 64
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                format!("must be a region name (lowercase letters, digits, inner hyphens), got {value:?}"),
            ))
        }
    }

    /// Global service events are recorded in this region.
    pub fn us_east_1() -> Self {
        Self("us-east-1".to_owned())
    }
}

/// The commercial AWS regions: the default set that pull collectors poll.
pub const COMMERCIAL_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

/// A trail name, following CloudTrail's rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrailName(String);
string_newtype!(TrailName);

impl TrailName {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let fail = |why: &str| Err(FieldError::new(field, format!("invalid trail name {value:?}: {why}")));
        if !(3..=128).contains(&value.len()) {
            return fail("must be 3 to 128 characters long");
        }
        let is_punct = |b: u8| matches!(b, b'.' | b'_' | b'-');
        let bytes = value.as_bytes();
        if !bytes.iter().all(|&b| b.is_ascii_alphanumeric() || is_punct(b)) {
            return fail("only ASCII letters, digits, '.', '_' and '-' are allowed");
        }
        if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
            return fail("must start and end with a letter or digit");
        }
        if bytes.windows(2).any(|w| is_punct(w[0]) && is_punct(w[1])) {
            return fail("must not contain adjacent '.', '_' or '-'");
        }
        if value.parse::<Ipv4Addr>().is_ok() {
            return fail("must not be formatted as an IP address");
        }
        Ok(Self(value.to_owned()))
    }
}

/// `arn:aws:cloudtrail:HOME_REGION:OWNER_ACCOUNT:trail/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrailArn {
    pub home_region: Region,
    pub owner_account_id: AccountId,
    pub name: TrailName,
}

impl TrailArn {
    pub fn new(home_region: Region, owner_account_id: AccountId, name: TrailName) -> Self {
        Self { home_region, owner_account_id, name }
    }

    /// Whether a "name or ARN" argument is meant as an ARN.
    pub fn looks_like_arn(value: &str) -> bool {
        value.starts_with("arn:")
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let invalid = || {
            FieldError::new(
                field,
                format!("must be arn:aws:cloudtrail:REGION:ACCOUNT:trail/NAME, got {value:?}"),
            )
        };
        let mut parts = value.splitn(6, ':');
        let (Some("arn"), Some(_partition), Some("cloudtrail"), Some(region), Some(account), Some(resource)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let name = resource.strip_prefix("trail/").ok_or_else(invalid)?;
        Ok(Self {
            home_region: Region::parse(field, region)?,
            owner_account_id: AccountId::parse(field, account)?,
            name: TrailName::parse(field, name)?,
        })
    }
}

impl fmt::Display for TrailArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "arn:aws:cloudtrail:{}:{}:trail/{}", self.home_region, self.owner_account_id, self.name)
    }
}

/// An S3 bucket name, following S3's general-purpose bucket naming rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketName(String);
string_newtype!(BucketName);

impl BucketName {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let fail = |why: &str| Err(FieldError::new(field, format!("invalid bucket name {value:?}: {why}")));
        if !(3..=63).contains(&value.len()) {
            return fail("must be 3 to 63 characters long");
        }
        let bytes = value.as_bytes();
        if !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-') {
            return fail("only lowercase letters, digits, '.' and '-' are allowed");
        }
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return fail("must start and end with a letter or digit");
        }
        if value.contains("..") {
            return fail("must not contain two adjacent periods");
        }
        if value.parse::<Ipv4Addr>().is_ok() {
            return fail("must not be formatted as an IP address");
        }
        for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
            if value.starts_with(prefix) {
                return fail(&format!("must not start with {prefix:?}"));
            }
        }
        for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
            if value.ends_with(suffix) {
                return fail(&format!("must not end with {suffix:?}"));
            }
        }
        Ok(Self(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trail_names_follow_cloudtrail_rules() {
        for good in ["abc", "My-Trail_1.x", "org-trail", &"a".repeat(128)] {
            assert!(TrailName::parse("name", good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "my--trail",
            "my-_namespace",
            "a b c",
            "192.168.5.4",
            &"a".repeat(129),
            "trail/x",
        ] {
            let err = TrailName::parse("name", bad).unwrap_err();
            assert_eq!(err.field, "name");
        }
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["my-bucket", "a.b.c", "123"] {
            assert!(BucketName::parse("s3_bucket_name", good).is_ok(), "{good}");
        }
        for bad in ["My-Bucket", "ab", "a..b", "-ab", "10.0.0.1", "xn--abc", "abc-s3alias", "a_b"] {
            assert!(BucketName::parse("s3_bucket_name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trail_arn_round_trips() {
        let arn = "arn:aws:cloudtrail:us-east-1:123456789012:trail/org-trail";
        let parsed = TrailArn::parse("name", arn).unwrap();
        assert_eq!(parsed.to_string(), arn);
        assert!(TrailArn::parse("name", "arn:aws:s3:::bucket").is_err());
        assert!(TrailArn::parse("name", "arn:aws:cloudtrail:us-east-1:12:trail/x").is_err());
    }

    #[test]
    fn organization_ids_and_regions() {
        assert!(OrganizationId::parse("id", "o-abcdef1234").is_ok());
        assert!(OrganizationId::parse("id", "o-ABCDEF1234").is_err());
        assert!(OrganizationId::parse("id", "o-short").is_err());
        assert!(OrganizationId::parse("id", OrganizationId::generate().as_str()).is_ok());
        assert!(Region::parse("region", "us-east-1").is_ok());
        assert!(Region::parse("region", "xx-made-up-9").is_ok());
        assert!(Region::parse("region", "US-EAST-1").is_err());
        assert!(Region::parse("region", "").is_err());
    }
}
