//! `cargo xtask watch [DAY]`: re-grades a day whenever a file under
//! `exercises/` is saved (debounced), moving on when it passes. Polls file
//! times, so it works everywhere; press Enter to re-run by hand, `q` to quit.

use crate::check::{self, CheckArgs};
use crate::course::Course;
use crate::{progress, util};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

const POLL: Duration = Duration::from_millis(400);
/// Quiet time after the last change before grading (editors save in bursts).
const DEBOUNCE: Duration = Duration::from_millis(600);

fn snapshot(dir: &Path, out: &mut BTreeMap<PathBuf, SystemTime>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            snapshot(&p, out);
        } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
            out.insert(p, m);
        }
    }
}

pub fn run(day: Option<String>) -> Result<()> {
    let root = util::project_root();
    let course = Course::load(&root.join("course.toml"))?;
    let mut target = match day {
        Some(d) => course.select(&d)?[0].number,
        None => match progress::current_day(&course) {
            Some(d) => d.number,
            None => {
                println!("every day has passed: well done. `cargo xtask check all` to confirm.");
                return Ok(());
            }
        },
    };
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        while stdin.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if tx.send(line.trim().to_string()).is_err() {
                break;
            }
            line.clear();
        }
    });
    let exercises = root.join("exercises");
    let mut seen = BTreeMap::new();
    snapshot(&exercises, &mut seen);
    loop {
        let args = CheckArgs {
            target: format!("day{target}"),
            ..Default::default()
        };
        let passed = check::run(&args).unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            false
        });
        if passed {
            // `check` has named the next day already
            if course.day(target + 1).is_some() {
                target += 1;
                continue;
            }
        }
        println!("watching exercises/ for day {target} (Enter: re-run, q: quit)");
        // wait for a change (debounced) or a key
        let mut changed_at: Option<std::time::Instant> = None;
        loop {
            match rx.recv_timeout(POLL) {
                Ok(cmd) if cmd == "q" => return Ok(()),
                Ok(_) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) if changed_at.is_none() => {}
                Err(_) => {}
            }
            let mut now = BTreeMap::new();
            snapshot(&exercises, &mut now);
            if now != seen {
                seen = now;
                changed_at = Some(std::time::Instant::now());
            } else if changed_at.is_some_and(|t| t.elapsed() >= DEBOUNCE) {
                break;
            }
        }
    }
}
