//! Step 1: the Debian packages the build needs (cmake, g++, libclang 14,
//! OpenBLAS, python3-venv), installed with apt-get when missing.

use super::*;

pub(super) fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs the Debian packages the build needs when any is missing.
pub(super) fn ensure_debian_packages() -> Result<bool> {
    let wanted = [
        "cmake",
        "g++",
        "libclang1-14",
        "libclang-common-14-dev",
        "libopenblas0-pthread",
        "python3-venv",
    ];
    let missing: Vec<&str> = wanted.into_iter().filter(|p| !dpkg_installed(p)).collect();
    // python3-venv is only needed where python3 lacks a working venv module.
    let missing: Vec<&str> = missing
        .into_iter()
        .filter(|p| *p != "python3-venv" || !python_has_venv())
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    let step = Step::start(format!("apt-get install {}", missing.join(" ")));
    let log = Layout::new().log("apt");
    run_logged(privileged(&["apt-get", "update", "-qq"]).as_mut(), &log).context(
        "apt-get update failed; install these Debian packages by hand: cmake g++ libclang1-14 libclang-common-14-dev libopenblas0-pthread",
    )?;
    let mut install = privileged(&["apt-get", "install", "-y", "-qq", "--no-install-recommends"]);
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(&missing);
    run_logged(&mut install, &Layout::new().log("apt-install"))?;
    step.done();
    Ok(true)
}

/// `args` as root: directly when we are root, else through sudo.
pub(super) fn privileged(args: &[&str]) -> Box<Command> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if is_root {
        Command::new(args[0])
    } else {
        let mut c = Command::new("sudo");
        c.arg(args[0]);
        c
    };
    cmd.args(&args[1..]);
    Box::new(cmd)
}

pub(super) fn python_has_venv() -> bool {
    Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
