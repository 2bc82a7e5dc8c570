//! `orgtrail org|accounts|tokens` and `create-admin-token`.

use clap::Subcommand;

use super::output::{self, Output};
use super::{CreateAdminTokenArgs, call_error};
use crate::client::Clients;
use crate::node::config::Config;
use crate::proto::v1 as pb;
use crate::secrets::MasterKey;
use crate::store::tokens::Role;

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create the organization (one per deployment).
    Create {
        /// Organization id (o- + 10..32 lowercase alnum); default: generated.
        #[arg(long, default_value = "")]
        id: String,
        /// 12-digit management account id.
        #[arg(long)]
        management_account_id: String,
        /// Regions pull collectors poll (repeat or comma-separate); default: the commercial regions.
        #[arg(long = "region", value_delimiter = ',')]
        regions: Vec<String>,
    },
    /// Describe the organization.
    Describe,
    /// Change the regions pull collectors poll.
    Update {
        /// New region list (repeat or comma-separate).
        #[arg(long = "region", value_delimiter = ',', required = true)]
        regions: Vec<String>,
    },
    /// Sync member accounts from AWS Organizations (server-side, with the server's AWS credentials):
    /// register new accounts, suspend suspended ones, remove those that left.
    Sync(super::org_sync::SyncArgs),
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Register a member account.
    Register {
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        email: String,
    },
    /// Describe one account.
    Describe {
        #[arg(long)]
        account_id: String,
    },
    /// List accounts.
    List {
        /// Only accounts in this state.
        #[arg(long, value_parser = ["ACTIVE", "SUSPENDED", "REMOVED"])]
        status: Option<String>,
    },
    /// Change an account's name, email or status.
    Update {
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long, value_parser = ["ACTIVE", "SUSPENDED"])]
        status: Option<String>,
    },
    /// Mark an account REMOVED (its delivered data stays).
    Deregister {
        #[arg(long)]
        account_id: String,
    },
    /// Issue a single-use enrollment token for `orgtrail bootstrap`; printed once.
    EnrollToken {
        /// How long the token works: `90s`, `30m`, `1h`, `7d` (60 seconds to 7 days).
        #[arg(long, default_value = "1h", value_parser = parse_lifetime)]
        expires: i64,
        /// Only this 12-digit account may enroll with the token.
        #[arg(long, default_value = "")]
        account_id: String,
    },
}

/// `90s`, `30m`, `1h`, `7d` (or plain seconds) → seconds; the server checks the range.
pub fn parse_lifetime(value: &str) -> Result<i64, String> {
    let value = value.trim();
    let (number, unit) = match value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => value.split_at(at),
        None => (value, "s"),
    };
    let number: i64 =
        number.parse().map_err(|_| format!("{value:?} is not a duration like 90s, 30m, 1h or 7d"))?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit {other:?}: use s, m, h or d")),
    };
    Ok(number.saturating_mul(unit_seconds))
}

fn print_enrollment_token(
    response: &pb::CreateEnrollmentTokenResponse,
    format: Output,
) -> anyhow::Result<()> {
    if format == Output::Json {
        return output::json(response);
    }
    output::fields(&[
        ("enrollment token (shown once)", response.enrollment_token.clone()),
        ("expires", output::time(&response.expire_time)),
        ("account", output::or_dash(&response.account_id)),
        ("external id", response.external_id.clone()),
        ("aggregator principal", response.aggregator_principal.clone()),
    ]);
    println!();
    println!(
        "in the member account: orgtrail bootstrap --endpoint ENDPOINT --enrollment-token {}",
        response.enrollment_token
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["admin", "auditor", "member"])]
        role: String,
        /// Account of a member token.
        #[arg(long, default_value = "")]
        account_id: String,
        /// Lifetime in seconds; 0: never expires.
        #[arg(long, default_value_t = 0)]
        expires_in_seconds: i64,
        /// Also create an AWS-style access key pair (for the CloudTrail-compatible API).
        #[arg(long)]
        with_access_key: bool,
    },
    /// List tokens (never their secrets).
    List {
        /// Include revoked and expired tokens.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a token.
    Revoke {
        #[arg(long)]
        token_id: String,
    },
    /// Describe the token in use.
    Whoami,
}

fn print_organization(org: &pb::Organization, format: Output) -> anyhow::Result<()> {
    if format == Output::Json {
        return output::json(org);
    }
    output::fields(&[
        ("id", org.id.clone()),
        ("management_account_id", org.management_account_id.clone()),
        ("regions", org.regions.join(",")),
        ("created_time", output::time(&org.created_time)),
    ]);
    if let Some(sync) = &org.last_sync {
        super::org_sync::print_status(sync);
    }
    Ok(())
}

pub async fn org(mut clients: Clients, command: OrgCommand, format: Output) -> anyhow::Result<()> {
    let org = match command {
        OrgCommand::Sync(args) => return super::org_sync::run(clients, args, format).await,
        OrgCommand::Create { id, management_account_id, regions } => {
            clients
                .organizations
                .create_organization(pb::CreateOrganizationRequest { id, management_account_id, regions })
                .await
        }
        OrgCommand::Describe => {
            clients.organizations.describe_organization(pb::DescribeOrganizationRequest {}).await
        }
        OrgCommand::Update { regions } => {
            clients
                .organizations
                .update_organization(pb::UpdateOrganizationRequest {
                    regions: Some(pb::RegionList { regions }),
                })
                .await
        }
    }
    .map_err(call_error)?
    .into_inner();
    print_organization(&org, format)
}

fn status_name(value: i32) -> String {
    pb::AccountStatus::try_from(value)
        .map(|s| s.as_str_name().trim_start_matches("ACCOUNT_STATUS_").to_owned())
        .unwrap_or_else(|_| value.to_string())
}

fn status_value(name: &str) -> i32 {
    pb::AccountStatus::from_str_name(&format!("ACCOUNT_STATUS_{name}")).map(|s| s as i32).unwrap_or_default()
}

fn print_accounts(accounts: &[pb::Account], format: Output) -> anyhow::Result<()> {
    if format == Output::Json {
        return output::json(&accounts);
    }
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            let source = pb::RegistrationSource::try_from(a.registration_source)
                .map(|s| s.as_str_name().trim_start_matches("REGISTRATION_SOURCE_").to_owned())
                .unwrap_or_default();
            vec![
                a.account_id.clone(),
                a.name.clone(),
                output::or_dash(&a.email),
                status_name(a.status),
                source,
                output::time(&a.joined_time),
                format!("{}/{}/{}", a.events_accepted, a.events_duplicate, a.events_rejected),
            ]
        })
        .collect();
    output::table(&["ACCOUNT_ID", "NAME", "EMAIL", "STATUS", "SOURCE", "JOINED", "EVENTS_OK/DUP/REJ"], &rows);
    Ok(())
}

pub async fn accounts(mut clients: Clients, command: AccountsCommand, format: Output) -> anyhow::Result<()> {
    let api = &mut clients.accounts;
    let one = match command {
        AccountsCommand::Register { account_id, name, email } => {
            api.register_account(pb::RegisterAccountRequest { account_id, name, email }).await
        }
        AccountsCommand::Describe { account_id } => {
            api.describe_account(pb::DescribeAccountRequest { account_id }).await
        }
        AccountsCommand::Update { account_id, name, email, status } => {
            let status = status.as_deref().map(status_value);
            api.update_account(pb::UpdateAccountRequest { account_id, name, email, status, collector: None })
                .await
        }
        AccountsCommand::Deregister { account_id } => {
            api.deregister_account(pb::DeregisterAccountRequest { account_id }).await
        }
        AccountsCommand::EnrollToken { expires, account_id } => {
            let response = api
                .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                    expires_in_seconds: expires,
                    account_id,
                })
                .await
                .map_err(call_error)?
                .into_inner();
            return print_enrollment_token(&response, format);
        }
        AccountsCommand::List { status } => {
            let status = status.as_deref().map(status_value).unwrap_or_default();
            let mut all = Vec::new();
            let mut next_token = String::new();
            loop {
                let page = api
                    .list_accounts(pb::ListAccountsRequest { page_size: 0, next_token, status })
                    .await
                    .map_err(call_error)?
                    .into_inner();
                all.extend(page.accounts);
                if page.next_token.is_empty() {
                    break;
                }
                next_token = page.next_token;
            }
            return print_accounts(&all, format);
        }
    };
    let account = one.map_err(call_error)?.into_inner();
    print_accounts(std::slice::from_ref(&account), format)
}

fn role_name(value: i32) -> String {
    pb::Role::try_from(value)
        .map(|r| r.as_str_name().trim_start_matches("ROLE_").to_lowercase())
        .unwrap_or_else(|_| value.to_string())
}

fn print_tokens(tokens: &[pb::Token], format: Output) -> anyhow::Result<()> {
    if format == Output::Json {
        return output::json(&tokens);
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.token_id.clone(),
                t.name.clone(),
                role_name(t.role),
                output::or_dash(&t.account_id),
                output::or_dash(&t.access_key_id),
                output::time(&t.created_time),
                output::time(&t.expire_time),
                output::time(&t.revoked_time),
            ]
        })
        .collect();
    output::table(
        &["TOKEN_ID", "NAME", "ROLE", "ACCOUNT", "ACCESS_KEY_ID", "CREATED", "EXPIRES", "REVOKED"],
        &rows,
    );
    Ok(())
}

fn print_issued(response: &pb::CreateTokenResponse, format: Output) -> anyhow::Result<()> {
    if format == Output::Json {
        return output::json(response);
    }
    if let Some(token) = &response.token {
        print_tokens(std::slice::from_ref(token), format)?;
    }
    println!();
    println!("secret (shown once): {}", response.secret);
    if !response.secret_access_key.is_empty() {
        println!("secret access key (shown once): {}", response.secret_access_key);
    }
    Ok(())
}

pub async fn tokens(mut clients: Clients, command: TokensCommand, format: Output) -> anyhow::Result<()> {
    let api = &mut clients.tokens;
    let one = match command {
        TokensCommand::Create { name, role, account_id, expires_in_seconds, with_access_key } => {
            let role =
                pb::Role::from_str_name(&format!("ROLE_{}", role.to_uppercase())).unwrap_or_default() as i32;
            let response = api
                .create_token(pb::CreateTokenRequest {
                    name,
                    role,
                    account_id,
                    expires_in_seconds,
                    with_access_key,
                })
                .await
                .map_err(call_error)?
                .into_inner();
            return print_issued(&response, format);
        }
        TokensCommand::List { all } => {
            let mut found = Vec::new();
            let mut next_token = String::new();
            loop {
                let page = api
                    .list_tokens(pb::ListTokensRequest { page_size: 0, next_token, include_inactive: all })
                    .await
                    .map_err(call_error)?
                    .into_inner();
                found.extend(page.tokens);
                if page.next_token.is_empty() {
                    break;
                }
                next_token = page.next_token;
            }
            return print_tokens(&found, format);
        }
        TokensCommand::Revoke { token_id } => api.revoke_token(pb::RevokeTokenRequest { token_id }).await,
        TokensCommand::Whoami => api.who_am_i(pb::WhoAmIRequest {}).await,
    };
    let token = one.map_err(call_error)?.into_inner();
    print_tokens(std::slice::from_ref(&token), format)
}

/// Creates an admin token straight in the database: how a new deployment gets its first token.
pub async fn create_admin_token(args: CreateAdminTokenArgs, format: Output) -> anyhow::Result<()> {
    let config = Config::load(args.server.config.as_deref())?;
    let pool = crate::store::connect(config.database_url()?, 2).await?;
    crate::store::migrate(&pool).await?;
    let master_key = config.master_key.as_deref().map(MasterKey::from_base64).transpose()?;
    let issued = crate::control::api::token::issue(
        &pool,
        master_key.as_ref(),
        &args.name,
        Role::Admin,
        None,
        0,
        args.with_access_key,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let response = pb::CreateTokenResponse {
        token: Some(crate::control::api::convert::token(&issued.token)),
        secret: issued.secret,
        secret_access_key: issued.secret_access_key.unwrap_or_default(),
    };
    print_issued(&response, format)
}
