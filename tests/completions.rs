//! `flightdeck completions SHELL`: a completion script each shell accepts, printed without a
//! project; bash's completes subcommands and their subcommands from it.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn completions(shell: &str) -> std::process::Output {
    // A folder with no project in it: the script needs none, and nothing is created there.
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(["completions", shell])
        .current_dir(empty.path())
        .output()
        .unwrap();
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0, "wrote into the folder");
    output
}

#[test]
fn bash_completes_subcommands_from_the_script() {
    let output = completions("bash");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), &output.stdout).unwrap();
    let complete = |words: &str, cword: usize| {
        let line = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             _flightdeck flightdeck \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             echo \"${{COMPREPLY[@]}}\"",
            script.path().display()
        );
        let out = Command::new("bash").args(["-c", &line]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(complete("flightdeck ru", 1), "run runs");
    assert_eq!(complete("flightdeck runs s", 2), "show");
    assert_eq!(complete("flightdeck ap", 1), "approvals approve");
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_one_is_refused() {
    for (shell, marker) in [
        ("zsh", "#compdef flightdeck"),
        ("fish", "complete -c flightdeck"),
        ("elvish", "flightdeck"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let output = completions(shell);
        assert!(output.status.success(), "{shell}");
        assert!(String::from_utf8_lossy(&output.stdout).contains(marker), "{shell}");
    }
    let output = completions("nushell");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("possible values: bash"));
}
