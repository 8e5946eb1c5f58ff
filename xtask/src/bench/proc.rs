//! Running a measured process and reading its peak resident memory (the
//! kernel's `ru_maxrss` of that one child, from `wait4`), the one memory
//! figure every engine has, llama.cpp included.
use super::*;

/// How a finished child ended.
pub(super) struct Finished {
    pub(super) success: bool,
    /// `exit status N`, or the signal.
    pub(super) status: String,
    /// Peak resident set of the child, in bytes (Linux only).
    pub(super) max_rss_bytes: Option<u64>,
}

/// Waits for `child` and returns its exit and peak RSS. On Linux through
/// `wait4` (which reaps it: the `Child` must not be waited on again).
#[cfg(target_os = "linux")]
pub(super) fn wait_rss(child: std::process::Child) -> Result<Finished> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child `pid`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        // SAFETY: valid pointers to locals; `pid` is a child of this process.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break r;
        }
    };
    if r < 0 {
        bail!("wait4({pid}): {}", std::io::Error::last_os_error());
    }
    let (success, text) = if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        (code == 0, format!("exit status {code}"))
    } else if libc::WIFSIGNALED(status) {
        (false, format!("signal {}", libc::WTERMSIG(status)))
    } else {
        (false, format!("wait status {status}"))
    };
    Ok(Finished {
        success,
        status: text,
        // ru_maxrss is in KiB on Linux.
        max_rss_bytes: Some(usage.ru_maxrss as u64 * 1024),
    })
}

#[cfg(not(target_os = "linux"))]
pub(super) fn wait_rss(mut child: std::process::Child) -> Result<Finished> {
    let status = child.wait()?;
    Ok(Finished {
        success: status.success(),
        status: status.to_string(),
        max_rss_bytes: None,
    })
}

/// Runs `cmd` to the end, stdout captured, stderr to `log` (with stdout);
/// returns stdout (`None` when it failed) and the child's peak RSS.
pub(super) fn run_capture(mut cmd: Command, log: &Path) -> Result<(Option<String>, Option<u64>)> {
    std::fs::create_dir_all(log.parent().expect("has a parent"))?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let (out, err) = read_both(&mut child);
    let finished = wait_rss(child)?;
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    std::fs::write(
        log,
        format!(
            "$ {cmd:?}\n{}\n--- stderr\n{err}\n--- stdout\n{out}",
            finished.status
        ),
    )?;
    Ok((finished.success.then_some(out), finished.max_rss_bytes))
}

type Reader = std::thread::JoinHandle<String>;

/// Threads draining the child's stdout and stderr (so it never blocks on a
/// full pipe while we wait).
fn read_both(child: &mut std::process::Child) -> (Reader, Reader) {
    use std::io::Read;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    )
}
