//! The stack of a hung test process, read by a debugger from outside:
//! `eu-stack` or `gdb` on Linux, `lldb` on macOS (whichever is installed).
//! A timeout then names the learner's function that never returned, and
//! later tests seen in the same function are stopped at once.
//!
//! Attaching needs ptrace rights: a child started by [`allow_tracing`] lets
//! any process of the user trace it (Linux Yama `ptrace_scope` 1, the Ubuntu
//! default, would otherwise allow only its ancestors). When no debugger is
//! installed or attaching fails, the caller falls back to plain time limits.

use super::LearnerCode;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A debugger that can print the stacks of a running process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Debugger {
    EuStack,
    Gdb,
    Lldb,
}

impl Debugger {
    /// The first one on `PATH` (`TINY_LLM_NO_DEBUGGER=1` pretends there is
    /// none, to try the fallback).
    pub fn find() -> Option<Debugger> {
        if std::env::var_os("TINY_LLM_NO_DEBUGGER").is_some() {
            return None;
        }
        let candidates: &[(Debugger, &str)] = if cfg!(target_os = "macos") {
            &[(Debugger::Lldb, "lldb")]
        } else {
            &[
                (Debugger::EuStack, "eu-stack"),
                (Debugger::Gdb, "gdb"),
                (Debugger::Lldb, "lldb"),
            ]
        };
        candidates
            .iter()
            .find(|(_, exe)| on_path(exe))
            .map(|(d, _)| *d)
    }

    /// The command that prints every thread's stack of `pid`, whose
    /// executable is `exe`. gdb reads `symbols` instead of `exe`: a copy
    /// without debug info (see [`symbols_for`]), so it attaches in a second
    /// or two instead of parsing 100 MB of DWARF.
    fn command(self, pid: u32, symbols: &Path) -> Command {
        let pid = pid.to_string();
        match self {
            Debugger::EuStack => {
                let mut c = Command::new("eu-stack");
                c.args(["-p", &pid]);
                c
            }
            Debugger::Gdb => {
                let mut c = Command::new("gdb");
                c.args([
                    "-nx",
                    "-batch",
                    "-iex",
                    "set debuginfod enabled off",
                    "-ex",
                    "set print frame-arguments none",
                    "-ex",
                    "thread apply all bt",
                ]);
                c.arg(symbols).arg(&pid);
                c
            }
            Debugger::Lldb => {
                let mut c = Command::new("lldb");
                c.args(["--batch", "-p", &pid, "-o", "thread backtrace all"]);
                c
            }
        }
    }
}

/// A copy of `exe` without its debug info, under `cache` (made once per
/// test binary with `objcopy --strip-debug`; its code, symbols and unwind
/// tables are those of `exe`). `exe` itself when objcopy is missing.
pub fn symbols_for(exe: &Path, cache: &Path) -> PathBuf {
    let Some(name) = exe.file_name() else {
        return exe.to_path_buf();
    };
    let copy = cache.join(name).with_extension("nodebug");
    let fresh = |c: &Path| {
        let (Ok(a), Ok(b)) = (std::fs::metadata(c), std::fs::metadata(exe)) else {
            return false;
        };
        matches!((a.modified(), b.modified()), (Ok(x), Ok(y)) if x >= y)
    };
    if fresh(&copy) {
        return copy;
    }
    let made = std::fs::create_dir_all(cache).is_ok()
        && Command::new("objcopy")
            .arg("--strip-debug")
            .arg(exe)
            .arg(&copy)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if made {
        copy
    } else {
        exe.to_path_buf()
    }
}

/// Where `exe` is loaded in process `pid` (Linux: `/proc/PID/maps`), to
/// turn a frame's address into an offset in the file. Zero for a non-PIE
/// executable, whose addresses are already those of the file.
pub fn load_base(pid: u32, exe: &Path) -> Option<u64> {
    let header = std::fs::read(exe).ok()?;
    if header.get(16) == Some(&2) {
        return Some(0); // ET_EXEC
    }
    let exe = std::fs::canonicalize(exe).ok()?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|l| {
        let mut cols = l.split_whitespace();
        let range = cols.next()?;
        let (_perms, offset) = (cols.next()?, cols.next()?);
        let path = cols.nth(2)?;
        (Path::new(path) == exe && u64::from_str_radix(offset, 16).ok()? == 0)
            .then(|| u64::from_str_radix(range.split('-').next()?, 16).ok())
            .flatten()
    })
}

/// `file:line` of an offset in `exe` (`addr2line`), when it has line tables.
pub fn line_of(exe: &Path, offset: u64) -> Option<String> {
    let out = Command::new("addr2line")
        .arg("-e")
        .arg(exe)
        .arg(format!("{offset:#x}"))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!line.starts_with("??") && !line.ends_with(":0") && line.contains(':')).then_some(line)
}

fn on_path(exe: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| Path::new(&dir).join(exe).is_file())
    })
}

/// One frame: the function (demangled, hash suffix removed) and, when the
/// debugger read line tables, `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub location: Option<String>,
    /// The frame's address: where it runs (innermost frame) or returns to.
    pub pc: Option<u64>,
}

/// Every frame of every thread of `pid` (running `exe`; `symbols` from
/// [`symbols_for`]), innermost first within a thread; `None` when the
/// debugger failed or took longer than `limit`.
pub fn sample(debugger: Debugger, pid: u32, symbols: &Path, limit: Duration) -> Option<Vec<Frame>> {
    let mut child = debugger
        .command(pid, symbols)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                child.kill().ok();
                child.wait().ok();
                return None;
            }
        }
    }
    let text = reader.join().ok()?;
    let frames = parse(&text);
    (!frames.is_empty()).then_some(frames)
}

/// Frames in the output of gdb (`#3  0x... in f () at src/a.rs:12`),
/// eu-stack (`#3  0x... f`, then `    src/a.rs:12` with `-s`) or lldb
/// (`frame #3: 0x... bin`f(...) at a.rs:12:5`).
pub fn parse(text: &str) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t
            .strip_prefix("frame #")
            .or_else(|| t.strip_prefix("* frame #"))
        {
            // lldb
            let Some((_, after)) = rest.split_once('`') else {
                continue;
            };
            let (func, loc) = match after.rsplit_once(" at ") {
                Some((f, l)) => (f, Some(l.trim().to_string())),
                None => (after, None),
            };
            let func = func.split(" + ").next().unwrap_or(func);
            let pc = rest.split_once("0x").and_then(|(_, r)| hex_prefix(r));
            frames.push(frame(cut_args(func), loc, pc));
        } else if let Some(rest) = t.strip_prefix('#') {
            // gdb or eu-stack: `#N  [0xADDR in ]func[ (args)][ at file:line]`
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit()).trim();
            let pc = rest.strip_prefix("0x").and_then(hex_prefix);
            let rest = match rest.strip_prefix("0x") {
                Some(r) => {
                    let r = r.trim_start_matches(|c: char| c.is_ascii_hexdigit()).trim();
                    r.strip_prefix("in ").unwrap_or(r)
                }
                None => rest,
            };
            let (func, loc) = match rest.rsplit_once(" at ") {
                Some((f, l)) if l.contains(':') => (f, Some(l.trim().to_string())),
                _ => (rest, None),
            };
            let func = func.strip_suffix(" from").unwrap_or(func);
            let func = func.split(" from /").next().unwrap_or(func);
            frames.push(frame(cut_args(func), loc, pc));
        } else if let Some(last) = frames.last_mut() {
            // eu-stack -s: the source line follows its frame, indented
            let looks_like_source = line.starts_with("    ")
                && t.rsplit_once(':')
                    .is_some_and(|(_, n)| n.chars().all(|c| c.is_ascii_digit()));
            if looks_like_source && last.location.is_none() {
                last.location = Some(t.to_string());
            }
        }
    }
    frames.retain(|f| !f.function.is_empty() && f.function != "??");
    frames
}

fn frame(function: &str, location: Option<String>, pc: Option<u64>) -> Frame {
    Frame {
        function: demangled_name(function),
        location,
        pc,
    }
}

/// The hex number at the start of `s` (after its `0x`).
fn hex_prefix(s: &str) -> Option<u64> {
    let end = s.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(s.len());
    u64::from_str_radix(&s[..end], 16).ok()
}

/// `f (...)`, `f ()` or `f(x=1)` -> `f`, keeping `<A as B>::f`.
fn cut_args(func: &str) -> &str {
    let func = func.trim();
    match func.rfind(" (") {
        Some(at) => &func[..at],
        None if func.ends_with(')') => match func.find('(') {
            Some(at) if at > 0 => &func[..at],
            _ => func,
        },
        None => func,
    }
}

/// A Rust symbol without its `::h0123456789abcdef` hash.
pub fn demangled_name(function: &str) -> String {
    let f = function.trim();
    if let Some((head, hash)) = f.rsplit_once("::h") {
        if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return head.to_string();
        }
    }
    f.to_string()
}

/// Whether two frames name the same function, whichever way the debugger
/// spelled it: closures (`{{closure}}` in symbol tables, `{closure#0}` in
/// debug info) and generic arguments are left out.
pub fn same_function(a: &str, b: &str) -> bool {
    fn base(f: &str) -> String {
        let f = plain_name(f);
        let f = f.split("::{").next().unwrap_or(&f);
        let mut out = String::with_capacity(f.len());
        let mut depth = 0usize;
        for c in f.chars() {
            match c {
                '<' => depth += 1,
                '>' => depth = depth.saturating_sub(1),
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    }
    base(a) == base(b)
}

/// `<tiny_llm::mlp::Mlp as Trait>::forward` -> `tiny_llm::mlp::Mlp::forward`
/// (the trait left out); other names unchanged.
pub fn plain_name(f: &str) -> String {
    let Some(inner) = f.strip_prefix('<') else {
        return f.to_string();
    };
    let mut depth = 1usize;
    for (i, c) in inner.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    let ty = inner[..i].split(" as ").next().unwrap_or(&inner[..i]);
                    return format!("{ty}{}", &inner[i + 1..]);
                }
            }
            _ => {}
        }
    }
    f.to_string()
}

/// The innermost frame of the learner's code, with its location made
/// relative to the workspace: from the debugger, else from `line` (given
/// the frame), else guessed from the module path.
pub fn learner_frame(
    frames: &[Frame],
    code: &LearnerCode,
    line: impl Fn(&Frame) -> Option<String>,
) -> Option<super::HangSite> {
    let f = frames.iter().find(|f| code.owns_function(&f.function))?;
    let file = code.file_of(&f.function);
    let location = match f.location.clone().or_else(|| line(f)) {
        Some(l) if code.owns_path(&l) => code.relative(&l),
        // lldb prints the file's base name only: `basics.rs:25:5`
        Some(l) if !l.contains('/') && file.ends_with(super::classify::strip_line_col(&l)) => {
            format!("{file}{}", &l[super::classify::strip_line_col(&l).len()..])
        }
        _ => file,
    };
    Some(super::HangSite {
        function: plain_name(&f.function),
        location: Some(location),
    })
}

/// Lets any process of this user trace the child (Linux Yama). Call on the
/// `Command` that starts a test.
#[cfg(target_os = "linux")]
pub fn allow_tracing(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; it only changes this process's
    // Yama exception, and its result is ignored (no Yama: nothing to do).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PTRACER, libc::PR_SET_PTRACER_ANY, 0, 0, 0);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn allow_tracing(_cmd: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> LearnerCode {
        LearnerCode {
            crate_name: "tiny_llm".into(),
            src_dir: "exercises/src".into(),
            workspace: "/w".into(),
        }
    }

    #[test]
    fn reads_gdb_with_and_without_line_tables() {
        let gdb = "\
Thread 2 (Thread 0x7f (LWP 12) \"softmax_f32\"):
#0  0x000055d1e2f0a3e4 in mlx::core::array::eval () from /w/target/mlx/lib/libmlx.so
#1  0x000055d1e2f0a3e4 in tiny_llm::basics::softmax (...) at exercises/src/basics.rs:25
#2  0x000055d1e2f0b000 in <tiny_llm::attention::Mha as core::ops::Fn<(A,)>>::call (...) at /w/exercises/src/attention.rs:7
#3  day1::softmax_f32::{{closure}} () at grader/tests/day1.rs:20
Thread 1 (Thread 0x7e (LWP 11) \"day1-abc\"):
#0  0x00007f in __futex_abstimed_wait_common64 (...) at ./nptl/futex-internal.c:57
#1  0x000055 in std::thread::JoinInner<T>::join::h0123456789abcdef ()
";
        let frames = parse(gdb);
        assert_eq!(frames[0].function, "mlx::core::array::eval");
        assert_eq!(frames[1].function, "tiny_llm::basics::softmax");
        assert_eq!(
            frames[1].location.as_deref(),
            Some("exercises/src/basics.rs:25")
        );
        assert_eq!(
            frames[2].function,
            "<tiny_llm::attention::Mha as core::ops::Fn<(A,)>>::call"
        );
        assert_eq!(frames[3].function, "day1::softmax_f32::{{closure}}");
        assert_eq!(frames[5].function, "std::thread::JoinInner<T>::join");
        let site = learner_frame(&frames, &code(), |_| None).unwrap();
        assert_eq!(site.function, "tiny_llm::basics::softmax");
        assert_eq!(site.location.as_deref(), Some("exercises/src/basics.rs:25"));

        let bare = "#0  0x000055 in tiny_llm::basics::softmax::he0533a769ef64ecd ()\n#1  0x000056 in day1::run_softmax::h0123456789abcdef ()\n";
        let site = learner_frame(&parse(bare), &code(), |_| None).unwrap();
        assert_eq!(site.function, "tiny_llm::basics::softmax");
        // no line tables: the file comes from the module path (lib.rs when
        // the module's file does not exist, as under this fake root)
        assert_eq!(site.location.as_deref(), Some("exercises/src/lib.rs"));
    }

    #[test]
    fn reads_eu_stack_and_lldb() {
        let eu = "PID 12 - process\nTID 12:\n#0  0x000055d1e2f0a3e4 tiny_llm::mlp::silu::h0123456789abcdef\n    /w/exercises/src/mlp.rs:30\n#1  0x000055d1e2f0a000 day4::silu_f32\n";
        let f = parse(eu);
        assert_eq!(f[0].function, "tiny_llm::mlp::silu");
        assert_eq!(f[0].location.as_deref(), Some("/w/exercises/src/mlp.rs:30"));
        assert_eq!(f[1].function, "day4::silu_f32");

        let lldb = "* thread #1, name = 'silu_f32', stop reason = signal SIGSTOP\n  * frame #0: 0x0000000100003f50 day4-abc`tiny_llm::mlp::silu::h0123456789abcdef(x=0x1) at mlp.rs:30:5\n    frame #1: 0x0000000100004000 day4-abc`day4::silu_f32 at day4.rs:12:5\n";
        let f = parse(lldb);
        assert_eq!(f[0].function, "tiny_llm::mlp::silu");
        assert_eq!(f[0].location.as_deref(), Some("mlp.rs:30:5"));
        assert_eq!(f[1].function, "day4::silu_f32");
    }

    #[test]
    fn closures_and_generics_name_their_function() {
        assert!(same_function(
            "tiny_llm::basics::softmax::{{closure}}",
            "tiny_llm::basics::softmax::{closure#0}"
        ));
        assert!(same_function(
            "tiny_llm::mlp::silu<f32>",
            "tiny_llm::mlp::silu"
        ));
        assert!(!same_function("tiny_llm::mlp::silu", "tiny_llm::mlp::mlp"));
        assert_eq!(
            plain_name("<tiny_llm::attention::Mha as core::ops::Fn<(A,)>>::call"),
            "tiny_llm::attention::Mha::call"
        );
        assert!(same_function(
            "<tiny_llm::mlp::Mlp as x::Forward>::forward",
            "tiny_llm::mlp::Mlp::forward"
        ));
    }

    #[test]
    fn only_the_learners_crate_counts() {
        let c = code();
        assert!(c.owns_function("tiny_llm::basics::softmax"));
        assert!(c.owns_function("<tiny_llm::mlp::Mlp>::forward"));
        assert!(!c.owns_function("tiny_llm_ref::basics::softmax"));
        assert!(!c.owns_function("tiny_llm_common::checkpoint::load"));
        assert!(!c.owns_function("core::ops::function::FnOnce::call_once<tiny_llm::x>"));
    }
}
