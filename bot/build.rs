//! Rebuilds the bot when a migration is added or changed, because `sqlx::migrate!` embeds
//! the files of `../migrations` at compile time and cargo does not track them otherwise.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
