//! Test harness: the real control plane on a real socket over a fresh Postgres database
//! (`#[sqlx::test]` gives each test its own), called through the real gRPC clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use orgtrail::api::{self, Ctx};
use orgtrail::cli::client::{self, Clients, Target};
use orgtrail::model::{AccountId, Region};
use orgtrail::proto::v1 as pb;
use orgtrail::secrets::MasterKey;
use orgtrail::store::tokens::Role;
use sqlx::PgPool;
use tokio::sync::watch;

pub const MANAGEMENT: &str = "111111111111";
pub const MEMBER_A: &str = "222222222222";
pub const MEMBER_B: &str = "333333333333";

pub struct TestApi {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub master_key: Arc<MasterKey>,
    stop: watch::Sender<bool>,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub async fn start(pool: PgPool) -> TestApi {
    let master_key = Arc::new(MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap());
    let ctx = Ctx {
        pool: pool.clone(),
        default_region: Region::parse("region", "us-east-1").unwrap(),
        master_key: Some(master_key.clone()),
        staging: Arc::new(orgtrail::store::staging::PgStaging::new(pool.clone())),
    };
    let listener = api::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(api::serve(ctx, listener, None, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    TestApi { addr, pool, master_key, stop }
}

impl TestApi {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A fresh bearer secret of `role` (member tokens need `account`).
    pub async fn token(&self, role: Role, account: Option<&str>) -> String {
        let account = account.map(|a| AccountId::parse("account_id", a).unwrap());
        let issued =
            api::token::issue(&self.pool, Some(&self.master_key), "test", role, account.as_ref(), 0, false)
                .await
                .unwrap();
        issued.secret
    }

    pub async fn clients(&self, token: &str) -> Clients {
        client::connect(&Target { endpoint: self.endpoint(), token: token.to_owned(), ca_cert: None })
            .await
            .unwrap()
    }

    pub async fn admin(&self) -> Clients {
        let token = self.token(Role::Admin, None).await;
        self.clients(&token).await
    }

    pub async fn member(&self, account: &str) -> Clients {
        let token = self.token(Role::Member, Some(account)).await;
        self.clients(&token).await
    }

    pub async fn auditor(&self) -> Clients {
        let token = self.token(Role::Auditor, None).await;
        self.clients(&token).await
    }
}

/// An organization (management account 111111111111) with two registered members.
pub async fn org_with_members(admin: &mut Clients) {
    admin
        .organizations
        .create_organization(pb::CreateOrganizationRequest {
            id: "o-testorg1234".into(),
            management_account_id: MANAGEMENT.into(),
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
        })
        .await
        .unwrap();
    for (account_id, name) in [(MEMBER_A, "member-a"), (MEMBER_B, "member-b")] {
        admin
            .accounts
            .register_account(pb::RegisterAccountRequest {
                account_id: account_id.into(),
                name: name.into(),
                email: format!("{name}@example.com"),
            })
            .await
            .unwrap();
    }
}

pub fn org_trail(name: &str) -> pb::CreateTrailRequest {
    pb::CreateTrailRequest {
        name: name.into(),
        s3_bucket_name: "central-bucket".into(),
        is_organization_trail: true,
        ..Default::default()
    }
}

pub fn account_trail(name: &str, owner: &str) -> pb::CreateTrailRequest {
    pb::CreateTrailRequest {
        name: name.into(),
        s3_bucket_name: "member-bucket".into(),
        owner_account_id: owner.into(),
        ..Default::default()
    }
}

/// The status code of a call that must fail.
pub fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    match result {
        Ok(response) => panic!("expected an error, got {:?}", response.into_inner()),
        Err(status) => status.code(),
    }
}

/// The status of a call that must fail.
pub fn status<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
    match result {
        Ok(response) => panic!("expected an error, got {:?}", response.into_inner()),
        Err(status) => status,
    }
}
