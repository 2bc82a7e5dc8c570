//! TEMPORARY (replaced by the go-plugin transport).
pub async fn serve<P: super::tfplugin6::provider_server::Provider>(_provider: P) -> anyhow::Result<()> {
    anyhow::bail!("transport not merged yet")
}
