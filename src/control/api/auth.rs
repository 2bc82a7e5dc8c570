//! Authentication (bearer token → caller, for every RPC of every orgtrail service) and
//! authorization (which role may do what), each in one place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sqlx::PgPool;
use tonic::Status;
use uuid::Uuid;

use super::error::{ApiError, marker};
use crate::model::AccountId;
use crate::model::trail::Trail;
use crate::secrets::hash_bearer_secret;
use crate::store::tokens::{self, Role};

/// Who is calling, established once per request by [`AuthLayer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token_id: Uuid,
    pub role: Role,
    /// The account a member token is scoped to.
    pub account_id: Option<AccountId>,
}

impl Caller {
    /// The caller of a request that went through [`AuthLayer`].
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))
    }

    /// The caller a token stands for.
    pub fn from_token(token: &tokens::Token) -> Caller {
        Caller { token_id: token.id, role: token.role, account_id: token.account_id.clone() }
    }

    /// The member's account, for member callers.
    pub fn member_account(&self) -> Option<&AccountId> {
        match self.role {
            Role::Member => self.account_id.as_ref(),
            Role::Admin | Role::Auditor => None,
        }
    }
}

/// What a caller wants to do. Resource-level checks take the resource.
pub enum Action<'a> {
    /// Describe the organization.
    ReadOrganization,
    /// Create or change the organization, register/update accounts, manage tokens.
    Administer,
    /// Read one account.
    ReadAccount(&'a AccountId),
    /// List accounts (members see only their own).
    ListAccounts,
    /// Read trails (visibility is checked per trail with [`can_see_trail`]).
    ReadTrails,
    /// Create, change or delete trails at all (role gate before any resource is looked up).
    WriteTrails,
    /// Create a trail with this owner, organization-wide or not.
    CreateTrail { owner: &'a AccountId, organization: bool },
    /// Change or delete this trail.
    WriteTrail(&'a Trail),
    /// Describe one's own token.
    WhoAmI,
    /// Push events (members: their own account's; checked per event).
    Ingest,
    /// Read alert rules, packs and dead letters (organization-wide: not for members).
    ReadRules,
    /// Look events up in the event history, of one account or (None) of all the caller may see.
    ReadEvents(Option<&'a AccountId>),
}

/// The authorization policy: the only place that knows what each role may do.
pub fn authorize(caller: &Caller, action: Action<'_>) -> Result<(), ApiError> {
    let denied = |what: &str| {
        Err(ApiError::PermissionDenied(format!("a {} token may not {what}", caller.role.as_str())))
    };
    let not_management = |what: &str| {
        Err(ApiError::PermissionDenied(format!(
            "{}: a {} token may not {what}",
            marker::NOT_MANAGEMENT_ACCOUNT,
            caller.role.as_str()
        )))
    };
    match (caller.role, action) {
        (_, Action::ReadOrganization | Action::WhoAmI | Action::ReadTrails | Action::ListAccounts) => Ok(()),
        (Role::Admin, _) => Ok(()),
        (Role::Auditor, Action::ReadAccount(_) | Action::ReadEvents(_) | Action::ReadRules) => Ok(()),
        (Role::Member, Action::ReadRules) => denied("read alert rules (they cover the whole organization)"),
        // A member's lookups are narrowed to its account; naming another account is refused.
        (Role::Member, Action::ReadEvents(None)) => Ok(()),
        (Role::Member, Action::ReadEvents(Some(account))) => {
            if caller.account_id.as_ref() == Some(account) {
                Ok(())
            } else {
                denied(&format!("look up events of account {account}"))
            }
        }
        (Role::Auditor, Action::Ingest) => denied("send events (auditors are read-only)"),
        (Role::Member, Action::Ingest) => Ok(()),
        (Role::Auditor, Action::Administer) => denied("administer the organization, accounts or tokens"),
        (Role::Auditor, Action::WriteTrails | Action::CreateTrail { .. } | Action::WriteTrail(_)) => {
            denied("change trails (auditors are read-only)")
        }
        (Role::Member, Action::Administer) => denied("administer the organization, accounts or tokens"),
        (Role::Member, Action::ReadAccount(account)) => {
            if caller.account_id.as_ref() == Some(account) {
                Ok(())
            } else {
                denied(&format!("read account {account}"))
            }
        }
        (Role::Member, Action::WriteTrails) => Ok(()),
        (Role::Member, Action::CreateTrail { owner, organization }) => {
            if organization {
                not_management("create organization trails (only the management account's admins can)")
            } else if caller.account_id.as_ref() != Some(owner) {
                denied(&format!("create trails for account {owner}"))
            } else {
                Ok(())
            }
        }
        (Role::Member, Action::WriteTrail(trail)) => {
            if trail.settings.is_organization_trail {
                not_management("change organization trails (members may only read them)")
            } else if caller.account_id.as_ref() != Some(trail.owner()) {
                denied(&format!("change trails of account {}", trail.owner()))
            } else {
                Ok(())
            }
        }
    }
}

/// Whether the caller may see this trail at all. `member_active` says whether a member caller's
/// account is ACTIVE (organization trails cover only ACTIVE accounts).
pub fn can_see_trail(caller: &Caller, trail: &Trail, member_active: bool) -> bool {
    match caller.member_account() {
        None => true,
        Some(account) => trail.owner() == account || (trail.settings.is_organization_trail && member_active),
    }
}

/// Looks bearer tokens up, with a short cache so hot paths (ingest) do not hit Postgres per call.
/// A revoked token keeps working for at most [`CACHE_TTL`].
pub struct Authenticator {
    pool: PgPool,
    cache: Mutex<HashMap<Vec<u8>, (Caller, Instant)>>,
}

const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX_ENTRIES: usize = 10_000;

impl Authenticator {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, cache: Mutex::new(HashMap::new()) }
    }

    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Caller, Status> {
        let value = headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| Status::unauthenticated("missing bearer token (authorization: Bearer <token>)"))?;
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Status::unauthenticated("authorization header must be \"Bearer <token>\""))?;
        let hash = hash_bearer_secret(secret);
        if let Some(caller) = self.cached(&hash) {
            return Ok(caller);
        }
        let token = tokens::find_active_by_hash(&self.pool, &hash)
            .await
            .map_err(|e| Status::from(ApiError::from(e)))?;
        let token = token.ok_or_else(|| Status::unauthenticated("unknown, expired or revoked token"))?;
        let caller = Caller::from_token(&token);
        self.remember(hash, caller.clone());
        Ok(caller)
    }

    fn cached(&self, hash: &[u8]) -> Option<Caller> {
        let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.get(hash).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(caller, _)| caller.clone())
    }

    fn remember(&self, hash: Vec<u8>, caller: Caller) {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= CACHE_MAX_ENTRIES {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        }
        cache.insert(hash, (caller, Instant::now()));
    }
}

/// RPCs authenticated by an enrollment token in the request instead of a bearer token: a member
/// account that enrolls has no API token yet. Exact paths, so that no other RPC slips through.
pub const ENROLLMENT_RPCS: &[&str] =
    &["/orgtrail.v1.AccountService/DescribeEnrollment", "/orgtrail.v1.AccountService/Enroll"];

/// Paths that need no bearer token: health checks (probes), reflection (service discovery), and
/// the enrollment RPCs.
fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.")
        || path.starts_with("/grpc.reflection.")
        || ENROLLMENT_RPCS.contains(&path)
}

/// Tower layer that authenticates every orgtrail RPC and hands the [`Caller`] to the handler.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, auth: self.auth.clone() }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready is the one that must serve this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            if is_public(request.uri().path()) {
                return inner.call(request).await;
            }
            match auth.authenticate(request.headers()).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
