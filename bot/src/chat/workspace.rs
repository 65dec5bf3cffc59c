//! `/new` with a zip attached (a Telegram document with `/new` as its caption, a Discord
//! attachment with `/new`): the zip becomes a workspace on the daemon and the session starts
//! in it (issue 15).
//!
//! The zip takes the path of a REST workspace upload: it is downloaded from the platform
//! chunk by chunk ([`ChatPlatform::fetch_into`]) straight into a [`BodyUpload`] to the
//! daemon (flow control and SHA-256 there), capped by `workspace_max_upload_bytes` while it
//! streams, then `workspace.create` unpacks it with the daemon's hardened unpacker. A
//! refusal (`ZIP_SYMLINK`, `ZIP_PATH_TRAVERSAL`, ...) is told to the chat with its code,
//! the daemon's message, which names the entry, and what to do about it; no session is
//! started then.
//! [`super::places`] starts the session in the workspace made here ([`from_zip`]).
//!
//! The workspace id is `workspace:<id>` when given, else derived from the file name
//! ([`id_from_name`]). Without `overwrite` an id that is taken gets a suffix (`site-2`),
//! so nothing the user already has is replaced unless they say so.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use common::ids::DaemonId;
use common::ipc::{Command, ErrorBody, ErrorCode, NoArgs, StartArgs};
use common::link::FEATURE_WORKSPACES;
use common::workspace::{
    MAX_ID_LEN, UploadReceived, WorkspaceCreateArgs, WorkspaceCreated, WorkspaceInfo,
    WorkspacePolicy, valid_id,
};
use serde_json::json;
use tokio::sync::mpsc;

use super::ctx::{Ctx, hub_msg};
use super::render::Rich;
use super::{Attachment, ChatPlatform, Incoming, NewArgs, TooLarge};
use crate::attach::human_bytes;
use crate::hub::HubError;
use crate::upload::{BodyUpload, UploadError};

/// How long unpacking may take at the daemon (as for a REST upload).
const CREATE_TIMEOUT: Duration = Duration::from_secs(600);

/// Download chunks in flight between the platform and the daemon's upload.
const CHUNKS_IN_FLIGHT: usize = 4;

/// True when `name` looks like a zip (by its extension).
pub fn is_zip(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".zip")
}

/// A workspace id made from file name `name`: its extension dropped, anything but
/// letters, digits, `-` and `_` turned into `-` (runs joined, ends trimmed), at most
/// [`MAX_ID_LEN`] long; `workspace` when nothing is left.
pub fn id_from_name(name: &str) -> String {
    let stem = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.eq_ignore_ascii_case("zip") => stem,
        _ => name,
    };
    let mut id = String::new();
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            id.push(c);
        } else if !id.ends_with('-') {
            id.push('-');
        }
    }
    let id: String = id.trim_matches('-').chars().take(MAX_ID_LEN).collect();
    let id = id.trim_end_matches('-');
    if id.is_empty() {
        "workspace".to_owned()
    } else {
        id.to_owned()
    }
}

/// `base`, or `base-2`, `base-3`, ... (cut to fit [`MAX_ID_LEN`]): the first not in `taken`.
pub fn unique_id(base: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_owned();
    }
    (2u32..)
        .map(|n| {
            let suffix = format!("-{n}");
            let keep = MAX_ID_LEN.saturating_sub(suffix.len());
            let head: String = base.chars().take(keep).collect();
            format!("{head}{suffix}")
        })
        .find(|id| !taken.contains(id))
        .unwrap_or_else(|| base.to_owned())
}

/// `CODE: message` of a daemon's refusal, then what to do about it ([`advice`]).
fn refusal(e: &ErrorBody) -> String {
    let code = serde_json::to_value(e.code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    match advice(e.code) {
        Some(what) => format!(
            "{code}: {}. Nothing was created; {what}.",
            e.message.trim_end_matches('.')
        ),
        None => format!("{code}: {}", e.message),
    }
}

/// What the sender can do about an archive the daemon refused with `code`; `None` for
/// refusals that are not about the archive.
fn advice(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::ZipPathTraversal
        | ErrorCode::ZipAbsolutePath
        | ErrorCode::ZipSymlink
        | ErrorCode::ZipSpecialFile
        | ErrorCode::ZipBadName
        | ErrorCode::ZipDuplicate => {
            "remove or rename that entry (zip the project from inside its folder) and send the zip again"
        }
        ErrorCode::ZipTooLarge | ErrorCode::ZipTooManyFiles | ErrorCode::ZipRatio => {
            "send a smaller zip (leave out build output and dependencies), or ask the machine's owner to raise workspace_max_bytes, workspace_max_files or workspace_max_ratio in ccrmd's config"
        }
        ErrorCode::ZipEncrypted => "send the zip again without a password",
        ErrorCode::ZipCorrupt => {
            "it is not a readable zip; make it again (e.g. `zip -r project.zip .`) and send it again"
        }
        _ => return None,
    })
}

fn hub_refusal(e: HubError) -> String {
    match e {
        HubError::Daemon(body) => refusal(&body),
        other => hub_msg(other),
    }
}

/// A workspace made from a zip: where the session starts, and what to tell about it.
pub struct Prepared {
    /// The daemon that holds the workspace.
    pub daemon: DaemonId,
    /// The session's start arguments (the workspace, the name given).
    pub start: StartArgs,
    /// The workspace, its file count and size, for the announcement.
    pub note: Rich,
}

/// `/new` with `zip`: the workspace made from it (see the module docs), or what to tell
/// the sender.
pub async fn from_zip<P: ChatPlatform>(
    ctx: &Ctx<P>,
    inc: &Incoming,
    args: NewArgs,
    zip: Attachment,
) -> Result<Prepared, String> {
    // `/new <daemon> [name]`: with a zip the first word names the machine, not a directory.
    let wanted = args.daemon.or(args.dir).filter(|d| !d.trim().is_empty());
    let daemon = ctx.pick_daemon(wanted).await?;
    if !ctx.state.hub.has_feature(&daemon, FEATURE_WORKSPACES) {
        return Err(format!(
            "that machine's ccrmd is too old for workspaces; upgrade it to start a session from {}",
            zip.name
        ));
    }
    let cap = ctx.state.cfg.workspace_max_upload_bytes;
    let too_large = |size: Option<u64>| {
        let size = size.map_or_else(String::new, |s| format!(" is {} and", human_bytes(s)));
        format!(
            "ZIP_TOO_LARGE: {}{size} is over the {} limit for workspaces (workspace_max_upload_bytes). Nothing was created; send a smaller zip (leave out build output and dependencies), or ask the bot's admin to raise workspace_max_upload_bytes.",
            zip.name,
            human_bytes(cap)
        )
    };
    if zip.size.is_some_and(|s| s > cap) {
        return Err(too_large(zip.size));
    }
    let (id, policy) = choose_id(ctx, &daemon, &args.workspace, &zip.name, args.overwrite).await?;
    let received = upload(ctx, &daemon, &zip, cap).await.map_err(|e| match e {
        Failed::TooLarge => too_large(None),
        Failed::Other(msg) => format!("{} was not made a workspace: {msg}", zip.name),
    })?;
    let create = WorkspaceCreateArgs {
        workspace_id: id.clone(),
        name: zip.name.clone(),
        description: Some(format!("sent in chat by {}", inc.from.name)),
        policy,
        zip_path: None,
        upload_id: Some(received.upload_id),
    };
    let created = ctx
        .state
        .hub
        .command(&daemon, Command::WorkspaceCreate(create), CREATE_TIMEOUT)
        .await
        .map_err(|e| format!("{} was not made a workspace: {}", zip.name, hub_refusal(e)))?;
    let created: WorkspaceCreated = serde_json::from_value(created)
        .map_err(|e| format!("the daemon's answer did not parse: {e}"))?;
    ctx.gate
        .audit(
            &inc.from,
            "workspace.create",
            &id,
            json!({"daemon": daemon, "reused": created.reused, "bytes": received.size,
                   "file": zip.name, "overwrite": policy == WorkspacePolicy::Overwrite}),
        )
        .await;
    let start = StartArgs {
        cwd: PathBuf::new(),
        name: args.name.filter(|n| !n.trim().is_empty()),
        workspace: Some(id.clone()),
        ..StartArgs::default()
    };
    let note = summary(&created, &zip.name, policy);
    Ok(Prepared {
        daemon,
        start,
        note,
    })
}

/// The workspace id and policy for a zip named `file` (see the module docs).
async fn choose_id<P: ChatPlatform>(
    ctx: &Ctx<P>,
    daemon: &DaemonId,
    given: &Option<String>,
    file: &str,
    overwrite: bool,
) -> Result<(String, WorkspacePolicy), String> {
    let base = match given.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
        Some(g) if valid_id(g) => g.to_owned(),
        Some(g) => {
            return Err(format!(
                "BAD_WORKSPACE_ID: workspace `{}` must be 1 to {MAX_ID_LEN} letters, digits, `-` or `_`; nothing was created.",
                g.escape_debug()
            ));
        }
        None => id_from_name(file),
    };
    if overwrite {
        return Ok((base, WorkspacePolicy::Overwrite));
    }
    let list = ctx
        .command(daemon, Command::WorkspacesList(NoArgs {}))
        .await
        .map_err(hub_refusal)?;
    let taken: HashSet<String> = serde_json::from_value::<Vec<WorkspaceInfo>>(list)
        .map_err(|e| format!("the daemon's workspace list did not parse: {e}"))?
        .into_iter()
        .map(|w| w.id)
        .collect();
    // A fresh id: `reuse` of a missing workspace creates it.
    Ok((unique_id(&base, &taken), WorkspacePolicy::Reuse))
}

/// Why [`upload`] failed.
enum Failed {
    /// Over `workspace_max_upload_bytes`.
    TooLarge,
    /// Anything else, said for the chat.
    Other(String),
}

/// Streams `zip` from the platform to `daemon` (see the module docs).
async fn upload<P: ChatPlatform>(
    ctx: &Ctx<P>,
    daemon: &DaemonId,
    zip: &Attachment,
    cap: u64,
) -> Result<UploadReceived, Failed> {
    let upload_err = |e: UploadError| match e {
        UploadError::Daemon(body) => Failed::Other(refusal(&body)),
        UploadError::Hub(h) => Failed::Other(hub_msg(h)),
        other => Failed::Other(other.to_string()),
    };
    let mut up = BodyUpload::start(&ctx.state.hub, daemon, Command::WorkspaceUpload(NoArgs {}))
        .await
        .map_err(upload_err)?;
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let feed = async {
        while let Some(chunk) = rx.recv().await {
            up.write(&chunk).await?;
        }
        Ok::<(), UploadError>(())
    };
    let (fetched, fed) = tokio::join!(ctx.platform.fetch_into(zip, cap, tx), feed);
    // The daemon's refusal says more than the download that stopped because of it.
    fed.map_err(upload_err)?;
    if let Err(e) = fetched {
        if e.downcast_ref::<TooLarge>().is_some() {
            return Err(Failed::TooLarge);
        }
        tracing::warn!(error = %e, name = %zip.name, "downloading a chat zip failed");
        return Err(Failed::Other(format!(
            "it could not be downloaded ({e}); please send it again"
        )));
    }
    if up.is_empty() {
        return Err(Failed::Other(
            "ZIP_CORRUPT: the file is empty. Nothing was created; make the zip again and send it again"
                .to_owned(),
        ));
    }
    let data = up.finish().await.map_err(upload_err)?;
    serde_json::from_value(data)
        .map_err(|e| Failed::Other(format!("the daemon's answer did not parse: {e}")))
}

/// "📦 Workspace `id` (from x.zip): 12 files, 3.4 KB." and how it came to be.
fn summary(created: &WorkspaceCreated, file: &str, policy: WorkspacePolicy) -> Rich {
    let w = &created.workspace;
    let how = match (policy, created.reused) {
        (WorkspacePolicy::Overwrite, _) => "replaced with",
        // Taken meanwhile by someone else: kept as it was.
        (WorkspacePolicy::Reuse, true) => "already existed and was kept; not unpacked from",
        (WorkspacePolicy::Reuse, false) => "unpacked from",
    };
    Rich::text("📦 Workspace ").code(w.id.clone()).push(format!(
        " {how} {file}: {} file{}, {}.",
        w.files,
        if w.files == 1 { "" } else { "s" },
        human_bytes(w.size)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_file_names() {
        assert_eq!(id_from_name("my site.zip"), "my-site");
        assert_eq!(id_from_name("Proj_1.ZIP"), "Proj_1");
        assert_eq!(id_from_name("../../etc/passwd.zip"), "etc-passwd");
        assert_eq!(id_from_name("ünï.zip"), "n");
        assert_eq!(id_from_name("..zip"), "workspace");
        assert_eq!(id_from_name(".zip"), "zip");
        let long = format!("{}.zip", "a".repeat(100));
        assert_eq!(id_from_name(&long).len(), MAX_ID_LEN);
        assert!(valid_id(&id_from_name("a\u{0}b\nc.zip")));
        assert!(is_zip("x.Zip") && !is_zip("x.zip.txt"));
    }

    #[test]
    fn taken_ids_get_a_suffix() {
        let taken: HashSet<String> = ["site", "site-2"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(unique_id("site", &taken), "site-3");
        assert_eq!(unique_id("other", &taken), "other");
        let long = "b".repeat(MAX_ID_LEN);
        let taken: HashSet<String> = [long.clone()].into_iter().collect();
        let next = unique_id(&long, &taken);
        assert!(next.len() <= MAX_ID_LEN && next.ends_with("-2"), "{next}");
    }
}
