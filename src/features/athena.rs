//! Athena/Trino `CREATE EXTERNAL TABLE` for a trail's log files (spec §7): AWS's CloudTrail
//! columns, and partition projection over the trail's key layout, so that no `ADD PARTITION` is
//! ever needed. Pure text generation; the CLI gathers the trail, organization and accounts.

use crate::model::FieldError;

/// CloudTrail existed from November 2013: no log file folder is older.
pub const PROJECTION_START: &str = "2013/01/01";

/// How the `account` partition is projected (organization trails only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountProjection {
    /// These account ids; AWS advises at most a few dozen (table metadata limit).
    Listed(Vec<String>),
    /// Any account: every query must then name `account` in its WHERE clause.
    Injected,
}

/// Where a trail's log files sit, and what the partitions range over.
#[derive(Debug, Clone)]
pub struct TableLayout {
    pub bucket: String,
    /// The trail's key prefix without leading or trailing `/`; empty for none.
    pub prefix: String,
    /// The organization id for organization trails (files under `AWSLogs/ORG_ID/ACCOUNT/`);
    /// None for account trails (files under `AWSLogs/OWNER/`).
    pub organization_id: Option<String>,
    /// The owner of an account trail (ignored for organization trails).
    pub owner_account_id: String,
    /// The `account` projection of an organization trail (ignored for account trails).
    pub accounts: AccountProjection,
    /// The regions files are written for.
    pub regions: Vec<String>,
}

/// The table named `name`, optionally in `database`.
#[derive(Debug, Clone)]
pub struct TableName {
    pub database: Option<String>,
    pub name: String,
}

impl TableName {
    /// `cloudtrail_` and the trail name, lowercased, anything but letters and digits as `_`.
    pub fn for_trail(trail_name: &str) -> Self {
        let sanitized: String = trail_name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .collect();
        Self { database: None, name: format!("cloudtrail_{sanitized}") }
    }

    fn qualified(&self) -> Result<String, FieldError> {
        check_identifier("table_name", &self.name)?;
        match &self.database {
            Some(database) => {
                check_identifier("database", database)?;
                Ok(format!("{database}.{}", self.name))
            }
            None => Ok(self.name.clone()),
        }
    }
}

/// Athena's (Glue's) rule: lowercase letters, digits and underscores, at most 255 characters.
fn check_identifier(field: &str, value: &str) -> Result<(), FieldError> {
    let valid = !value.is_empty()
        && value.len() <= 255
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("must be lowercase letters, digits and '_', got {value:?}")))
    }
}

/// A value inside a single-quoted DDL literal: quotes and backslashes have no portable escape
/// between Hive and Trino, so they are refused rather than escaped.
fn check_literal(field: &str, value: &str) -> Result<(), FieldError> {
    if value.contains(['\'', '\\']) || value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!(
                "cannot appear in an Athena table definition (quote, backslash or control character): {value:?}"
            ),
        ));
    }
    Ok(())
}

/// The columns of AWS's CloudTrail table (2025 list), plus `managementevent` and
/// `insightdetails`, which the SerDe leaves NULL when a record lacks them.
const COLUMNS: &str = "    eventversion STRING,
    useridentity STRUCT<
        type: STRING,
        principalid: STRING,
        arn: STRING,
        accountid: STRING,
        invokedby: STRING,
        accesskeyid: STRING,
        username: STRING,
        onbehalfof: STRUCT<
            userid: STRING,
            identitystorearn: STRING>,
        sessioncontext: STRUCT<
            attributes: STRUCT<
                mfaauthenticated: STRING,
                creationdate: STRING>,
            sessionissuer: STRUCT<
                type: STRING,
                principalid: STRING,
                arn: STRING,
                accountid: STRING,
                username: STRING>,
            ec2roledelivery: STRING,
            webidfederationdata: STRUCT<
                federatedprovider: STRING,
                attributes: MAP<STRING,STRING>>>>,
    eventtime STRING,
    eventsource STRING,
    eventname STRING,
    awsregion STRING,
    sourceipaddress STRING,
    useragent STRING,
    errorcode STRING,
    errormessage STRING,
    requestparameters STRING,
    responseelements STRING,
    additionaleventdata STRING,
    requestid STRING,
    eventid STRING,
    readonly STRING,
    resources ARRAY<STRUCT<
        arn: STRING,
        accountid: STRING,
        type: STRING>>,
    eventtype STRING,
    apiversion STRING,
    recipientaccountid STRING,
    serviceeventdetails STRING,
    sharedeventid STRING,
    vpcendpointid STRING,
    vpcendpointaccountid STRING,
    eventcategory STRING,
    addendum STRUCT<
        reason: STRING,
        updatedfields: STRING,
        originalrequestid: STRING,
        originaleventid: STRING>,
    sessioncredentialfromconsole STRING,
    edgedevicedetails STRING,
    tlsdetails STRUCT<
        tlsversion: STRING,
        ciphersuite: STRING,
        clientprovidedhostheader: STRING>,
    managementevent STRING,
    insightdetails STRING
";

/// Sorted, without duplicates, each checked as a literal.
fn value_list(field: &str, values: &[String]) -> Result<String, FieldError> {
    let mut values = values.to_vec();
    values.sort();
    values.dedup();
    if values.is_empty() {
        return Err(FieldError::new(field, "at least one value is needed for the projection"));
    }
    for value in &values {
        check_literal(field, value)?;
    }
    Ok(values.join(","))
}

/// The `CREATE EXTERNAL TABLE` statement for `layout`, ending with `;` and a newline.
pub fn create_table(table: &TableName, layout: &TableLayout) -> Result<String, FieldError> {
    let qualified = table.qualified()?;
    check_literal("s3_bucket_name", &layout.bucket)?;
    check_literal("s3_key_prefix", &layout.prefix)?;
    let regions = value_list("regions", &layout.regions)?;
    let mut root = format!("s3://{}/", layout.bucket);
    if !layout.prefix.is_empty() {
        root.push_str(&layout.prefix);
        root.push('/');
    }
    root.push_str("AWSLogs/");
    let mut partitions = Vec::new();
    let mut properties = vec![("projection.enabled".to_owned(), "true".to_owned())];
    let (location, template) = match &layout.organization_id {
        Some(organization) => {
            check_literal("organization_id", organization)?;
            let location = format!("{root}{organization}/");
            partitions.push("account STRING");
            match &layout.accounts {
                AccountProjection::Listed(accounts) => {
                    properties.push(("projection.account.type".into(), "enum".into()));
                    properties.push(("projection.account.values".into(), value_list("accounts", accounts)?));
                }
                AccountProjection::Injected => {
                    properties.push(("projection.account.type".into(), "injected".into()));
                }
            }
            let template = format!("{location}${{account}}/CloudTrail/${{region}}/${{timestamp}}");
            (location, template)
        }
        None => {
            check_literal("owner_account_id", &layout.owner_account_id)?;
            let location = format!("{root}{}/CloudTrail/", layout.owner_account_id);
            let template = format!("{location}${{region}}/${{timestamp}}");
            (location, template)
        }
    };
    partitions.extend(["region STRING", "`timestamp` STRING"]);
    properties.extend([
        ("projection.region.type".into(), "enum".into()),
        ("projection.region.values".into(), regions),
        ("projection.timestamp.type".into(), "date".into()),
        ("projection.timestamp.format".into(), "yyyy/MM/dd".into()),
        ("projection.timestamp.interval".into(), "1".into()),
        ("projection.timestamp.interval.unit".into(), "DAYS".into()),
        ("projection.timestamp.range".into(), format!("{PROJECTION_START},NOW")),
        ("storage.location.template".into(), template),
    ]);
    let partitions: Vec<String> = partitions.iter().map(|p| format!("    {p}")).collect();
    let properties: Vec<String> = properties.iter().map(|(k, v)| format!("    '{k}' = '{v}'")).collect();
    Ok(format!(
        "CREATE EXTERNAL TABLE {qualified} (\n{COLUMNS})\nPARTITIONED BY (\n{}\n)\n\
         ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe'\n\
         STORED AS INPUTFORMAT 'com.amazon.emr.cloudtrail.CloudTrailInputFormat'\n\
         OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\n\
         LOCATION '{location}'\nTBLPROPERTIES (\n{}\n);\n",
        partitions.join(",\n"),
        properties.join(",\n"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org_layout(prefix: &str) -> TableLayout {
        TableLayout {
            bucket: "central-bucket".into(),
            prefix: prefix.into(),
            organization_id: Some("o-testorg1234".into()),
            owner_account_id: "111111111111".into(),
            accounts: AccountProjection::Listed(vec!["222222222222".into(), "111111111111".into()]),
            regions: vec!["us-east-1".into(), "eu-west-1".into(), "us-east-1".into()],
        }
    }

    fn property<'a>(ddl: &'a str, key: &str) -> Option<&'a str> {
        let needle = format!("'{key}' = '");
        let start = ddl.find(&needle)? + needle.len();
        Some(&ddl[start..start + ddl[start..].find('\'')?])
    }

    #[test]
    fn org_trail_with_prefix_projects_account_region_and_date() {
        let table = TableName { database: Some("audit".into()), name: "cloudtrail_org".into() };
        let ddl = create_table(&table, &org_layout("logs/central")).unwrap();
        assert!(ddl.starts_with("CREATE EXTERNAL TABLE audit.cloudtrail_org (\n    eventversion STRING,\n"));
        assert!(ddl.contains("    insightdetails STRING\n)\nPARTITIONED BY (\n    account STRING,\n    region STRING,\n    `timestamp` STRING\n)\n"));
        assert!(ddl.contains("LOCATION 's3://central-bucket/logs/central/AWSLogs/o-testorg1234/'\n"));
        assert_eq!(
            property(&ddl, "storage.location.template"),
            Some(
                "s3://central-bucket/logs/central/AWSLogs/o-testorg1234/${account}/CloudTrail/${region}/${timestamp}"
            )
        );
        assert_eq!(property(&ddl, "projection.enabled"), Some("true"));
        assert_eq!(property(&ddl, "projection.account.type"), Some("enum"));
        assert_eq!(property(&ddl, "projection.account.values"), Some("111111111111,222222222222"));
        assert_eq!(property(&ddl, "projection.region.values"), Some("eu-west-1,us-east-1"));
        assert_eq!(property(&ddl, "projection.timestamp.format"), Some("yyyy/MM/dd"));
        assert_eq!(property(&ddl, "projection.timestamp.range"), Some("2013/01/01,NOW"));
        assert_eq!(property(&ddl, "projection.timestamp.interval.unit"), Some("DAYS"));
        assert!(ddl.ends_with("\n);\n"));
    }

    #[test]
    fn org_trail_can_inject_accounts() {
        let mut layout = org_layout("");
        layout.accounts = AccountProjection::Injected;
        let ddl = create_table(&TableName::for_trail("org"), &layout).unwrap();
        assert_eq!(property(&ddl, "projection.account.type"), Some("injected"));
        assert_eq!(property(&ddl, "projection.account.values"), None);
        assert!(ddl.contains("LOCATION 's3://central-bucket/AWSLogs/o-testorg1234/'\n"));
    }

    #[test]
    fn account_trail_without_prefix_sits_under_its_owner() {
        let layout = TableLayout {
            bucket: "member-bucket".into(),
            prefix: String::new(),
            organization_id: None,
            owner_account_id: "222222222222".into(),
            accounts: AccountProjection::Injected,
            regions: vec!["us-west-2".into()],
        };
        let ddl = create_table(&TableName::for_trail("My.Trail-1"), &layout).unwrap();
        assert!(ddl.starts_with("CREATE EXTERNAL TABLE cloudtrail_my_trail_1 (\n"));
        assert!(ddl.contains("PARTITIONED BY (\n    region STRING,\n    `timestamp` STRING\n)\n"));
        assert!(ddl.contains("LOCATION 's3://member-bucket/AWSLogs/222222222222/CloudTrail/'\n"));
        assert_eq!(
            property(&ddl, "storage.location.template"),
            Some("s3://member-bucket/AWSLogs/222222222222/CloudTrail/${region}/${timestamp}")
        );
        assert_eq!(property(&ddl, "projection.account.type"), None);
        assert_eq!(property(&ddl, "projection.region.values"), Some("us-west-2"));
    }

    #[test]
    fn unsafe_names_are_refused_with_their_field() {
        let bad_table = TableName { database: None, name: "Bad-Name".into() };
        assert_eq!(create_table(&bad_table, &org_layout("")).unwrap_err().field, "table_name");
        let bad_database = TableName { database: Some("a;b".into()), name: "t".into() };
        assert_eq!(create_table(&bad_database, &org_layout("")).unwrap_err().field, "database");
        let quoted = org_layout("it's");
        assert_eq!(create_table(&TableName::for_trail("t"), &quoted).unwrap_err().field, "s3_key_prefix");
        let mut no_regions = org_layout("");
        no_regions.regions.clear();
        assert_eq!(create_table(&TableName::for_trail("t"), &no_regions).unwrap_err().field, "regions");
    }
}
