//! Singer programs from PyPI for integration tests: each package in a virtualenv of its
//! own (`tap-jsonl` and `target-jsonl` pin incompatible `jsonschema` versions, so they
//! cannot share one), created on first use with `python3 -m venv` and `pip install`, and
//! kept under `CDP_SINGER_VENV` (default `target/singer-venv` of the workspace) for the
//! next runs.
//!
//! ```no_run
//! let tap = cdp_testkit::singer::program("tap-jsonl");
//! assert!(tap.ends_with("tap-jsonl/bin/tap-jsonl"));
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Where the virtualenvs are kept: `CDP_SINGER_VENV`, or `target/singer-venv` of the
/// workspace.
pub fn venv_root() -> PathBuf {
    match std::env::var_os("CDP_SINGER_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let testkit = Path::new(env!("CARGO_MANIFEST_DIR"));
            testkit
                .parent()
                .unwrap_or(testkit)
                .join("target")
                .join("singer-venv")
        }
    }
}

/// The executable of PyPI `package` (its console script of the same name), installed into
/// `{venv_root}/{package}` first if it is not there yet. Panics (a test failure) naming
/// the command that failed. Test binaries run one after another, and the tests of one
/// binary install one at a time.
pub fn program(package: &str) -> PathBuf {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let root = venv_root();
    let venv = root.join(package);
    let executable = venv.join("bin").join(package);
    if executable.exists() {
        return executable;
    }
    std::fs::create_dir_all(&root)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    // A venv without the program is what an interrupted install left: start over.
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(package));
    assert!(
        executable.exists(),
        "{} was not installed by pip",
        executable.display()
    );
    executable
}

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(status.success(), "{command:?} failed: {status}");
}
