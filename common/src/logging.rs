//! Logging for all three programs: `tracing` to stderr, filtered by `CCRM_LOG`.
//!
//! `CCRM_LOG` takes env_logger-style directives: a bare level for everything
//! (`info`, `debug`), a target prefix with its level (`ccrm_daemon=debug`), or several of
//! them, comma-separated (`info,ccrm_bot::ws=debug`). They are read by `tracing`'s
//! [`Targets`] filter, which matches target prefixes without a regular-expression engine
//! (`EnvFilter` would link one into every binary, for span filters nobody here uses).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// What is logged when `CCRM_LOG` is unset, empty or not a filter.
pub const DEFAULT_FILTER: &str = "info";

/// `value` read as a filter: [`DEFAULT_FILTER`] when it is absent or blank, else its
/// directives, or why they are not a filter.
pub fn filter(value: Option<&str>) -> Result<Targets, String> {
    let text = value.map(str::trim).filter(|v| !v.is_empty());
    text.unwrap_or(DEFAULT_FILTER)
        .parse::<Targets>()
        .map_err(|e| e.to_string())
}

/// Sends `tracing` to stderr (coloured on a terminal unless `NO_COLOR` is set), filtered by
/// `CCRM_LOG`. A `CCRM_LOG` that is not a filter is said on stderr, and the default used.
/// Does nothing if logging was already set up in this process.
pub fn init(program: &str) {
    let value = std::env::var("CCRM_LOG").ok();
    let targets = filter(value.as_deref()).unwrap_or_else(|why| {
        eprintln!(
            "{program}: CCRM_LOG is not a log filter ({why}); logging at `{DEFAULT_FILTER}`. \
             Use a level (error, warn, info, debug, trace) or target=level pairs, \
             comma-separated, e.g. `info,ccrm_bot=debug`"
        );
        filter(None).unwrap_or_default()
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi),
        )
        .with(targets)
        .try_init();
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::filter::LevelFilter;

    use super::*;

    #[test]
    fn levels_targets_and_defaults() {
        let f = filter(None).expect("default");
        assert!(f.would_enable("anything", &Level::INFO));
        assert!(!f.would_enable("anything", &Level::DEBUG));
        assert_eq!(
            filter(Some("  ")).expect("blank").default_level(),
            Some(LevelFilter::INFO)
        );

        let f = filter(Some("warn,ccrm_bot::ws=debug")).expect("directives");
        assert!(f.would_enable("ccrm_bot::ws::link", &Level::DEBUG));
        assert!(!f.would_enable("ccrm_bot::http", &Level::INFO));
        assert!(f.would_enable("ccrm_bot::http", &Level::WARN));

        // A target alone leaves everything else off, as env_logger and EnvFilter do.
        let f = filter(Some("ccrm_daemon=debug")).expect("one target");
        assert!(f.would_enable("ccrm_daemon::uplink", &Level::DEBUG));
        assert!(!f.would_enable("hyper", &Level::ERROR));
    }

    #[test]
    fn a_bad_filter_says_why() {
        let e = filter(Some("ccrm_bot=loud")).expect_err("not a level");
        assert!(!e.is_empty());
    }
}
