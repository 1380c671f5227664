//! `profile_admin`: not wired yet (see the open issues); it builds so the workspace layout is complete.

fn main() {
    eprintln!("profile_admin: not wired yet");
    std::process::exit(2);
}
