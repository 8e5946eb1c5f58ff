//! Token and attribute helpers for the tidy check: doc lines, derives,
//! signatures without `mut` bindings, token text without doc comments, the
//! identifiers an item uses, and a readable rendering for reports.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Attribute, Expr, FnArg, Lit, Meta, Pat, Signature, Type, UseTree, Visibility};

pub fn is_pub(vis: &Visibility) -> bool {
    matches!(vis, Visibility::Public(_))
}

/// `#[cfg(test)]`.
pub fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| match &a.meta {
        Meta::List(l) if l.path.is_ident("cfg") => l.tokens.to_string().trim() == "test",
        _ => false,
    })
}

/// The doc lines of `attrs` (`///` or `//!`, and `#[doc = "..."]`).
pub fn docs(attrs: &[Attribute]) -> Vec<String> {
    let mut lines = Vec::new();
    for a in attrs {
        if let Meta::NameValue(nv) = &a.meta {
            if !nv.path.is_ident("doc") {
                continue;
            }
            if let Expr::Lit(lit) = &nv.value {
                if let Lit::Str(s) = &lit.lit {
                    for l in s.value().split('\n') {
                        let l = l.strip_prefix(' ').unwrap_or(l);
                        lines.push(l.trim_end().to_string());
                    }
                }
            }
        }
    }
    lines
}

/// `#[derive(A, B)] ` with the derived traits sorted, or nothing; plus
/// `#[non_exhaustive] ` when present (both change what users may do).
pub fn derives(attrs: &[Attribute]) -> String {
    let mut names: Vec<String> = Vec::new();
    let mut out = String::new();
    for a in attrs {
        match &a.meta {
            Meta::List(l) if l.path.is_ident("derive") => names.extend(
                l.tokens
                    .to_string()
                    .split(',')
                    .map(|s| s.replace(' ', ""))
                    .filter(|s| !s.is_empty()),
            ),
            Meta::Path(p) if p.is_ident("non_exhaustive") => out.push_str("#[non_exhaustive] "),
            _ => {}
        }
    }
    names.sort();
    if !names.is_empty() {
        out.insert_str(0, &format!("#[derive({})] ", names.join(", ")));
    }
    out
}

/// A fn signature without `mut` on its bindings (`mut x: T` and `x: T` are
/// the same API).
pub fn sig_text(sig: &Signature) -> String {
    let mut sig = sig.clone();
    for input in sig.inputs.iter_mut() {
        match input {
            FnArg::Receiver(r) => r.mutability = None,
            FnArg::Typed(pt) => {
                if let Pat::Ident(pi) = &mut *pt.pat {
                    pi.mutability = None;
                }
            }
        }
    }
    tokens(&sig)
}

pub fn generics_text(g: &syn::Generics) -> String {
    let mut s = tokens(g);
    if let Some(w) = &g.where_clause {
        s.push(' ');
        s.push_str(&tokens(w));
    }
    s
}

/// The last path segment of a type (`StreamingDetokenizer<'t>` ->
/// `StreamingDetokenizer`); the whole type's tokens otherwise.
pub fn type_name(ty: &Type) -> String {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .map_or_else(|| tokens(ty), |s| s.ident.to_string()),
        _ => tokens(ty),
    }
}

/// `(exported name, full path)` for every leaf of a `use` tree.
pub fn flatten_use(tree: &UseTree, prefix: String, out: &mut Vec<(String, String)>) {
    match tree {
        UseTree::Path(p) => flatten_use(&p.tree, format!("{prefix}{}::", p.ident), out),
        UseTree::Name(n) => out.push((n.ident.to_string(), format!("{prefix}{}", n.ident))),
        UseTree::Rename(r) => out.push((
            r.rename.to_string(),
            format!("{prefix}{} as {}", r.ident, r.rename),
        )),
        UseTree::Glob(_) => out.push((format!("{prefix}*"), format!("{prefix}*"))),
        UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix.clone(), out);
            }
        }
    }
}

pub fn tokens<T: ToTokens>(t: &T) -> String {
    t.to_token_stream().to_string()
}

/// The tokens' text with every `#[doc = ...]` / `#![doc = ...]` removed, at
/// any depth.
pub fn without_docs(ts: TokenStream) -> String {
    strip_docs(ts).to_string()
}

fn strip_docs(ts: TokenStream) -> TokenStream {
    let tts: Vec<TokenTree> = ts.into_iter().collect();
    let mut out = Vec::with_capacity(tts.len());
    let mut i = 0;
    while i < tts.len() {
        if let TokenTree::Punct(p) = &tts[i] {
            if p.as_char() == '#' {
                let bang =
                    matches!(tts.get(i + 1), Some(TokenTree::Punct(q)) if q.as_char() == '!');
                let at = if bang { i + 2 } else { i + 1 };
                if let Some(TokenTree::Group(g)) = tts.get(at) {
                    let first = g.stream().into_iter().next();
                    if g.delimiter() == Delimiter::Bracket
                        && matches!(&first, Some(TokenTree::Ident(id)) if id == "doc")
                    {
                        i = at + 1;
                        continue;
                    }
                }
            }
        }
        out.push(match &tts[i] {
            TokenTree::Group(g) => {
                let mut ng = proc_macro2::Group::new(g.delimiter(), strip_docs(g.stream()));
                ng.set_span(g.span());
                TokenTree::Group(ng)
            }
            t => t.clone(),
        });
        i += 1;
    }
    out.into_iter().collect()
}

/// Every identifier in the tokens, at any depth.
pub fn idents_of(ts: TokenStream) -> Vec<String> {
    let mut out = Vec::new();
    for t in ts {
        match t {
            TokenTree::Ident(id) => out.push(id.to_string()),
            TokenTree::Group(g) => out.extend(idents_of(g.stream())),
            _ => {}
        }
    }
    out
}

/// A token string made readable for a report (`Option < & Array >` ->
/// `Option<&Array>`). Only for display: comparisons use the raw tokens.
pub fn pretty(tokens: &str) -> String {
    let mut s = tokens.to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" : ", ": "),
        (" ,", ","),
        (" ;", ";"),
        ("& ", "&"),
        (" (", "("),
        ("( ", "("),
        (" )", ")"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        ("[ ", "["),
        (" ]", "]"),
        ("# [", "#["),
        (" . ", "."),
    ] {
        s = s.replace(from, to);
    }
    s.replace("->", " -> ")
        .replace("  ", " ")
        .trim()
        .to_string()
}
