//! `butler-bot`: not wired yet (see the open issues); it builds so the workspace layout is complete.

fn main() {
    eprintln!("butler-bot: not wired yet");
    std::process::exit(2);
}
