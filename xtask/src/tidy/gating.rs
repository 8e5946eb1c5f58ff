//! The day gating agrees everywhere it is written down:
//!
//! - `course.toml`: each day's `modules`, every module in exactly one day;
//! - `exercises/src/lib.rs`: `#[cfg(not(feature = "ref-dayN"))] pub mod m;`
//!   and `#[cfg(feature = "ref-dayN")] pub use tiny_llm_ref::{m, ..};` for
//!   every module `m` of day N;
//! - `exercises/Cargo.toml`: a feature `ref-dayN = ["dep:tiny-llm-ref"]` per
//!   day, and no other `ref-day` feature;
//! - `solutions/src/lib.rs`: `pub mod m;` for every module, ungated;
//! - every top-level module file of both `src/` folders is declared there.
//!
//! What else the two lib.rs make public (`pub use tiny_llm_common::{Error,
//! Result}`) must agree as in any other module. (That each module's files
//! exist is `course::validate`'s check.)

use super::api;
use super::compare::{self, Side};
use super::text::{is_pub, tokens};
use super::{parse, Finding, Loc};
use crate::course::Course;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use syn::{Attribute, Item, Meta, UseTree};

const STUB_LIB: &str = "exercises/src/lib.rs";
const REF_LIB: &str = "solutions/src/lib.rs";
const STUB_TOML: &str = "exercises/Cargo.toml";
const COURSE: &str = "course.toml";

/// How a lib.rs item is gated.
#[derive(Debug, Clone, PartialEq)]
enum Gate {
    /// No `#[cfg]`.
    None,
    /// `#[cfg(not(feature = "ref-dayN"))]`: the learner's own day N.
    Own(u32),
    /// `#[cfg(feature = "ref-dayN")]`: day N from the reference.
    Ref(u32),
    /// Any other `#[cfg]` (its text).
    Other(String),
}

fn gate(attrs: &[Attribute]) -> Gate {
    let cfgs: Vec<String> = attrs
        .iter()
        .filter_map(|a| match &a.meta {
            Meta::List(l) if l.path.is_ident("cfg") => Some(l.tokens.to_string().replace(' ', "")),
            _ => None,
        })
        .collect();
    let day = |s: &str| -> Option<u32> {
        s.strip_prefix("feature=\"ref-day")?
            .strip_suffix('"')?
            .parse()
            .ok()
    };
    match cfgs.as_slice() {
        [] => Gate::None,
        [c] => {
            if let Some(n) = c
                .strip_prefix("not(")
                .and_then(|c| c.strip_suffix(')'))
                .and_then(day)
            {
                Gate::Own(n)
            } else if let Some(n) = day(c) {
                Gate::Ref(n)
            } else {
                Gate::Other(format!("#[cfg({c})]"))
            }
        }
        _ => Gate::Other(cfgs.iter().map(|c| format!("#[cfg({c})]")).collect()),
    }
}

/// Module name -> (line, gate) of every `mod m;` in a lib.rs, plus the
/// lib.rs with its modules (and, in the stub, its gated re-exports) taken
/// out.
struct Lib {
    mods: BTreeMap<String, (usize, Gate)>,
    /// `pub use tiny_llm_ref::m` under `ref-dayN`: m -> (line, N).
    reexports: BTreeMap<String, (usize, u32)>,
    rest: syn::File,
}

fn read_lib(mut file: syn::File, path: &str, out: &mut Vec<Finding>) -> Lib {
    let items = std::mem::take(&mut file.items);
    file.attrs.clear();
    let mut lib = Lib {
        mods: BTreeMap::new(),
        reexports: BTreeMap::new(),
        rest: file,
    };
    for item in items {
        let line = api::item_line(&item);
        match &item {
            Item::Mod(m) if m.content.is_none() => {
                if !is_pub(&m.vis) {
                    out.push(Finding::new(
                        Loc::new(path, line),
                        &m.ident.to_string(),
                        "module is not `pub` (the grader reaches every module from outside)".into(),
                        Vec::new(),
                    ));
                }
                lib.mods
                    .insert(m.ident.to_string(), (line, gate(&m.attrs)));
            }
            Item::Use(u) if gate(&u.attrs) != Gate::None => match gate(&u.attrs) {
                Gate::Ref(n) => {
                    let mut leaves = Vec::new();
                    use_leaves(&u.tree, Vec::new(), &mut leaves);
                    for leaf in leaves {
                        match leaf.as_slice() {
                            [krate, m] if krate == "tiny_llm_ref" => {
                                lib.reexports.insert(m.clone(), (line, n));
                            }
                            _ => out.push(Finding::new(
                                Loc::new(path, line),
                                &leaf.join("::"),
                                format!("a `ref-day{n}` re-export must be a module of the reference: `pub use tiny_llm_ref::{{m, ..}};`"),
                                Vec::new(),
                            )),
                        }
                    }
                }
                g => out.push(Finding::new(
                    Loc::new(path, line),
                    &tokens(&u.tree),
                    format!("gated re-export with {g:?}: expected `#[cfg(feature = \"ref-dayN\")] pub use tiny_llm_ref::{{..}};`"),
                    Vec::new(),
                )),
            },
            _ => lib.rest.items.push(item),
        }
    }
    lib
}

/// Every leaf of a `use` tree as its path segments (`*` for a glob).
fn use_leaves(tree: &UseTree, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let with = |s: String| {
        let mut p = prefix.clone();
        p.push(s);
        p
    };
    match tree {
        UseTree::Path(p) => use_leaves(&p.tree, with(p.ident.to_string()), out),
        UseTree::Name(n) => out.push(with(n.ident.to_string())),
        UseTree::Rename(r) => out.push(with(format!("{} as {}", r.ident, r.rename))),
        UseTree::Glob(_) => out.push(with("*".into())),
        UseTree::Group(g) => g
            .items
            .iter()
            .for_each(|t| use_leaves(t, prefix.clone(), out)),
    }
}

/// The `ref-dayN` features of exercises/Cargo.toml: N -> whether it enables
/// `dep:tiny-llm-ref`.
fn ref_features(root: &Path, out: &mut Vec<Finding>) -> BTreeMap<u32, bool> {
    let mut features = BTreeMap::new();
    let text = match std::fs::read_to_string(root.join(STUB_TOML)) {
        Ok(t) => t,
        Err(e) => {
            out.push(Finding::new(
                Loc::new(STUB_TOML, 0),
                "",
                format!("cannot be read: {e}"),
                Vec::new(),
            ));
            return features;
        }
    };
    let table: toml::Table = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            out.push(Finding::new(
                Loc::new(STUB_TOML, 0),
                "",
                format!("does not parse: {e}"),
                Vec::new(),
            ));
            return features;
        }
    };
    let Some(table) = table.get("features").and_then(|f| f.as_table()) else {
        return features;
    };
    for (name, value) in table {
        let Some(n) = name.strip_prefix("ref-day") else {
            continue;
        };
        match n.parse::<u32>() {
            Ok(n) => {
                let deps = value
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>());
                features.insert(n, deps.is_some_and(|d| d.contains(&"dep:tiny-llm-ref")));
            }
            Err(_) => out.push(Finding::new(
                Loc::new(STUB_TOML, 0),
                name,
                "a `ref-day` feature must be `ref-dayN` with N a day number".into(),
                Vec::new(),
            )),
        }
    }
    features
}

pub fn check(
    root: &Path,
    course: &Course,
    stub_files: &BTreeSet<String>,
    ref_files: &BTreeSet<String>,
    out: &mut Vec<Finding>,
) {
    // course.toml: every module in exactly one day.
    let mut day_of: BTreeMap<&str, u32> = BTreeMap::new();
    for d in &course.days {
        for m in &d.modules {
            if let Some(first) = day_of.insert(m, d.number) {
                out.push(Finding::new(
                    Loc::new(COURSE, 0),
                    m,
                    format!("module is listed in day {first} and in day {} (each module belongs to exactly one day)", d.number),
                    Vec::new(),
                ));
                day_of.insert(m, first);
            }
        }
    }
    let (Some(stub), Some(reference)) = (parse(root, STUB_LIB, out), parse(root, REF_LIB, out))
    else {
        return;
    };
    let stub = read_lib(stub, STUB_LIB, out);
    let reference = read_lib(reference, REF_LIB, out);
    let features = ref_features(root, out);

    for d in &course.days {
        let n = d.number;
        match features.get(&n) {
            None => out.push(Finding::new(
                Loc::new(STUB_TOML, 0),
                &format!("ref-day{n}"),
                format!("feature missing: expected `ref-day{n} = [\"dep:tiny-llm-ref\"]` (course.toml has day {n})"),
                Vec::new(),
            )),
            Some(false) => out.push(Finding::new(
                Loc::new(STUB_TOML, 0),
                &format!("ref-day{n}"),
                format!("feature must enable the reference: `ref-day{n} = [\"dep:tiny-llm-ref\"]`"),
                Vec::new(),
            )),
            Some(true) => {}
        }
        for m in &d.modules {
            if day_of.get(m.as_str()) != Some(&n) {
                continue; // listed twice: reported above
            }
            let expect_own = format!("`#[cfg(not(feature = \"ref-day{n}\"))] pub mod {m};`");
            match stub.mods.get(m) {
                None => out.push(Finding::new(
                    Loc::new(STUB_LIB, 0),
                    m,
                    format!(
                        "module of day {n} (course.toml) is not declared: expected {expect_own}"
                    ),
                    Vec::new(),
                )),
                Some((line, g)) if *g != Gate::Own(n) => out.push(Finding::new(
                    Loc::new(STUB_LIB, *line),
                    m,
                    format!(
                        "{}; course.toml puts it in day {n}: expected {expect_own}",
                        describe(g)
                    ),
                    Vec::new(),
                )),
                Some(_) => {}
            }
            match stub.reexports.get(m) {
                None => out.push(Finding::new(
                    Loc::new(STUB_LIB, 0),
                    m,
                    format!("module of day {n} (course.toml) is not taken from the reference under `ref-day{n}`: expected `#[cfg(feature = \"ref-day{n}\")] pub use tiny_llm_ref::{m};`"),
                    Vec::new(),
                )),
                Some((line, k)) if *k != n => out.push(Finding::new(
                    Loc::new(STUB_LIB, *line),
                    m,
                    format!("re-exported from the reference under `ref-day{k}`, but course.toml puts it in day {n}"),
                    Vec::new(),
                )),
                Some(_) => {}
            }
            match reference.mods.get(m) {
                None => out.push(Finding::new(
                    Loc::new(REF_LIB, 0),
                    m,
                    format!(
                        "module of day {n} (course.toml) is not declared: expected `pub mod {m};`"
                    ),
                    Vec::new(),
                )),
                Some((line, g)) if *g != Gate::None => out.push(Finding::new(
                    Loc::new(REF_LIB, *line),
                    m,
                    format!(
                        "{}; the reference declares every module, ungated",
                        describe(g)
                    ),
                    Vec::new(),
                )),
                Some(_) => {}
            }
        }
    }
    for (n, _) in features.iter().filter(|(n, _)| course.day(**n).is_none()) {
        out.push(Finding::new(
            Loc::new(STUB_TOML, 0),
            &format!("ref-day{n}"),
            format!("feature for day {n}, which course.toml does not have"),
            Vec::new(),
        ));
    }
    for (lib, path) in [(&stub, STUB_LIB), (&reference, REF_LIB)] {
        for (m, (line, _)) in &lib.mods {
            if !day_of.contains_key(m.as_str()) {
                out.push(Finding::new(
                    Loc::new(path, *line),
                    m,
                    "module belongs to no day: add it to one day's `modules` in course.toml".into(),
                    Vec::new(),
                ));
            }
        }
    }
    for (m, (line, _)) in &stub.reexports {
        if !day_of.contains_key(m.as_str()) {
            out.push(Finding::new(
                Loc::new(STUB_LIB, *line),
                m,
                "re-exported module belongs to no day in course.toml".into(),
                Vec::new(),
            ));
        }
    }
    // Every top-level module file is declared.
    for (files, lib, dir) in [
        (stub_files, &stub, "exercises/src"),
        (ref_files, &reference, "solutions/src"),
    ] {
        for f in files {
            let m = f
                .strip_suffix("/mod.rs")
                .or_else(|| f.strip_suffix(".rs"))
                .unwrap_or(f);
            if m != "lib" && !m.contains('/') && !lib.mods.contains_key(m) {
                out.push(Finding::new(
                    Loc::new(&format!("{dir}/{f}"), 0),
                    "",
                    format!("is not declared in {dir}/lib.rs (`pub mod {m};`)"),
                    Vec::new(),
                ));
            }
        }
    }
    // What else the two lib.rs export must agree.
    let (sa, ra) = (api::extract(&stub.rest), api::extract(&reference.rest));
    compare::compare(
        &Side {
            path: STUB_LIB,
            api: &sa,
        },
        &Side {
            path: REF_LIB,
            api: &ra,
        },
        false,
        out,
    );
}

fn describe(g: &Gate) -> String {
    match g {
        Gate::None => "declared without a day switch".into(),
        Gate::Own(k) => format!("gated as day {k} (`not(feature = \"ref-day{k}\")`)"),
        Gate::Ref(k) => format!("declared under `feature = \"ref-day{k}\"`"),
        Gate::Other(c) => format!("gated by {c}"),
    }
}
