//! `ccrm-bot` binary: parses flags, binds, and runs [`ccrm_bot::serve`].

use clap::Parser;

/// The ccrm server: hub, REST API and chat adapters (only /healthz so far).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "CCRM_BOT_LISTEN", default_value = "127.0.0.1:7878")]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CCRM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "ccrm-bot listening");
    ccrm_bot::serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
