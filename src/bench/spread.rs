//! The many-shard mode of `orgtrail bench pipeline`: events spread over synthetic accounts and regions.

/// Regions of the many-shard mode, in order.
const SPREAD_REGIONS: [&str; 17] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "sa-east-1",
];

/// Where event `n` goes in many-shard mode: account-major, so consecutive calls touch many shards
/// as an organization's traffic does.
pub(crate) struct Spread {
    pub(crate) accounts: Vec<String>,
    pub(crate) regions: usize,
}

impl Spread {
    pub(crate) fn new(accounts: usize, regions: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(accounts >= 1, "--accounts must be at least 1");
        anyhow::ensure!(
            (1..=SPREAD_REGIONS.len()).contains(&regions),
            "--regions must be 1 to {}, got {regions}",
            SPREAD_REGIONS.len()
        );
        Ok(Self {
            accounts: (0..accounts).map(|i| format!("{}", 200_000_000_000u64 + i as u64)).collect(),
            regions,
        })
    }

    pub(crate) fn place(&self, n: usize) -> (&str, &str) {
        let account = &self.accounts[n % self.accounts.len()];
        let region = SPREAD_REGIONS[(n / self.accounts.len()) % self.regions];
        (account, region)
    }
}
