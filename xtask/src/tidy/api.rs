//! The public API of one source file in comparable form: every public item,
//! keyed by a stable name (`softmax`, `RoPE`, `RoPE.cos`, `RoPE::new`,
//! `AttentionMask::Causal`, `impl Default for SamplerConfig`, ...), with its
//! signature as a normalized token string, its doc comment, whether the doc
//! calls it given, and its whole text without doc comments (for the given
//! check). Parsed with `syn`; nothing is compiled or expanded.

use super::text::{
    derives, docs, flatten_use, generics_text, idents_of, is_cfg_test, is_pub, sig_text, tokens,
    type_name, without_docs,
};
use quote::ToTokens;
use std::collections::BTreeMap;
use syn::spanned::Spanned;
use syn::{Attribute, Fields, ImplItem, Item, TraitItem};

/// One public item of a file.
#[derive(Debug, Clone)]
pub struct ApiItem {
    /// The line of the item in its file (1-based).
    pub line: usize,
    /// The signature as a token string: for a fn its `Signature`; for a
    /// struct or enum its header with derives; for a field its type; for a
    /// re-export its path. Comments, bodies and `mut` bindings are left out.
    pub signature: String,
    /// The doc comment, one entry per line, with rustdoc's leading space
    /// removed.
    pub docs: Vec<String>,
    /// The whole item (body included) as tokens, doc comments removed.
    pub full: String,
    /// Identifiers used anywhere in the item (for the given check's
    /// private helpers).
    pub idents: Vec<String>,
    /// For a type: the keys of its impl blocks (their text is in
    /// [`FileApi::impls`]).
    pub type_name: Option<String>,
}

impl ApiItem {
    /// The doc says the item is given (`(given)`, `(given; ...)`,
    /// `(Given: ...)`, `Hints: given code: ...`): not an exercise, so stub
    /// and reference must agree token for token.
    pub fn is_given(&self) -> bool {
        self.docs.iter().any(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("(given") || l.contains("given code")
        })
    }
}

/// A private (not `pub`) top-level item: a possible helper of given code.
#[derive(Debug, Clone)]
pub struct PrivateItem {
    pub line: usize,
    pub full: String,
    pub idents: Vec<String>,
}

/// Everything [`extract`] found in one file.
#[derive(Debug, Default)]
pub struct FileApi {
    /// `//!` lines of the file.
    pub module_docs: Vec<String>,
    /// Public items by key.
    pub items: BTreeMap<String, ApiItem>,
    /// Impl blocks by the name of their self type: (line, tokens without
    /// docs, identifiers used) in file order.
    pub impls: BTreeMap<String, Vec<(usize, String, Vec<String>)>>,
    /// Private top-level items by name.
    pub private: BTreeMap<String, PrivateItem>,
}

/// Reads the public API of a parsed file. Items under `#[cfg(test)]` are
/// skipped; inline `pub mod m { ... }` items are read with the prefix `m::`.
pub fn extract(file: &syn::File) -> FileApi {
    let mut api = FileApi {
        module_docs: docs(&file.attrs),
        ..Default::default()
    };
    let private_types: Vec<String> = file
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Struct(s) if !is_pub(&s.vis) => Some(s.ident.to_string()),
            Item::Enum(e) if !is_pub(&e.vis) => Some(e.ident.to_string()),
            _ => None,
        })
        .collect();
    for item in &file.items {
        read_item(item, "", &private_types, &mut api);
    }
    api
}

fn read_item(item: &Item, prefix: &str, private_types: &[String], api: &mut FileApi) {
    let attrs: &[Attribute] = item_attrs(item);
    if is_cfg_test(attrs) {
        return;
    }
    let line = item_line(item);
    let full = without_docs(item.to_token_stream());
    let idents = idents_of(item.to_token_stream());
    let entry = |signature: String| ApiItem {
        line,
        signature,
        docs: docs(attrs),
        full: full.clone(),
        idents: idents.clone(),
        type_name: None,
    };
    let add = |api: &mut FileApi, key: String, it: ApiItem| insert(api, prefix, key, it);
    match item {
        Item::Fn(f) if is_pub(&f.vis) => {
            add(api, f.sig.ident.to_string(), entry(sig_text(&f.sig)));
        }
        Item::Struct(s) if is_pub(&s.vis) => {
            let name = s.ident.to_string();
            let private = s.fields.iter().any(|f| !is_pub(&f.vis));
            let shape = match &s.fields {
                Fields::Named(_) => " { .. }",
                Fields::Unnamed(_) => " ( .. )",
                Fields::Unit => " ;",
            };
            let sig = format!(
                "{}struct {}{}{}{}",
                derives(attrs),
                tokens(&s.ident),
                generics_text(&s.generics),
                shape,
                if private { " + private fields" } else { "" },
            );
            let mut it = entry(sig);
            it.type_name = Some(name.clone());
            add(api, name.clone(), it);
            for (i, f) in s.fields.iter().enumerate() {
                if !is_pub(&f.vis) {
                    continue;
                }
                let field = f.ident.as_ref().map_or(i.to_string(), |x| x.to_string());
                let fi = ApiItem {
                    line: line_of(f.ident.as_ref().map_or_else(|| f.ty.span(), |i| i.span())),
                    signature: format!("pub {}: {}", field, tokens(&f.ty)),
                    docs: docs(&f.attrs),
                    full: without_docs(f.to_token_stream()),
                    idents: Vec::new(),
                    type_name: None,
                };
                add(api, format!("{name}.{field}"), fi);
            }
        }
        Item::Enum(e) if is_pub(&e.vis) => {
            let name = e.ident.to_string();
            let sig = format!(
                "{}enum {}{}",
                derives(attrs),
                tokens(&e.ident),
                generics_text(&e.generics)
            );
            let mut it = entry(sig);
            it.type_name = Some(name.clone());
            add(api, name.clone(), it);
            for v in &e.variants {
                let vi = ApiItem {
                    line: line_of(v.ident.span()),
                    signature: without_docs(v.to_token_stream()),
                    docs: docs(&v.attrs),
                    full: without_docs(v.to_token_stream()),
                    idents: Vec::new(),
                    type_name: None,
                };
                add(api, format!("{name}::{}", v.ident), vi);
            }
        }
        Item::Trait(t) if is_pub(&t.vis) => {
            let name = t.ident.to_string();
            let sig = format!(
                "trait {}{}{}",
                tokens(&t.ident),
                generics_text(&t.generics),
                if t.supertraits.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tokens(&t.supertraits))
                }
            );
            add(api, name.clone(), entry(sig));
            for ti in &t.items {
                let (key, sig, attrs) = match ti {
                    TraitItem::Fn(f) => (f.sig.ident.to_string(), sig_text(&f.sig), &f.attrs),
                    TraitItem::Const(c) => (
                        c.ident.to_string(),
                        format!("const {}: {}", c.ident, tokens(&c.ty)),
                        &c.attrs,
                    ),
                    TraitItem::Type(ty) => (
                        ty.ident.to_string(),
                        without_docs(ty.to_token_stream()),
                        &ty.attrs,
                    ),
                    _ => continue,
                };
                let it = ApiItem {
                    line: trait_item_line(ti),
                    signature: sig,
                    docs: docs(attrs),
                    full: without_docs(ti.to_token_stream()),
                    idents: idents_of(ti.to_token_stream()),
                    type_name: None,
                };
                add(api, format!("{name}::{key}"), it);
            }
        }
        Item::Const(c) if is_pub(&c.vis) => {
            let sig = format!("const {}: {}", c.ident, tokens(&c.ty));
            add(api, c.ident.to_string(), entry(sig));
        }
        Item::Static(s) if is_pub(&s.vis) => {
            let sig = format!("static {}: {}", s.ident, tokens(&s.ty));
            add(api, s.ident.to_string(), entry(sig));
        }
        Item::Type(t) if is_pub(&t.vis) => {
            let mut it = entry(without_docs(t.to_token_stream()));
            it.type_name = Some(t.ident.to_string());
            add(api, t.ident.to_string(), it);
        }
        Item::Use(u) if is_pub(&u.vis) => {
            let mut paths = Vec::new();
            flatten_use(&u.tree, String::new(), &mut paths);
            for (name, path) in paths {
                add(api, name, entry(format!("pub use {path}")));
            }
        }
        Item::Mod(m) if is_pub(&m.vis) => {
            if let Some((_, items)) = &m.content {
                let inner = format!("{prefix}{}::", m.ident);
                for i in items {
                    read_item(i, &inner, private_types, api);
                }
            }
        }
        Item::Impl(imp) => {
            let self_name = type_name(&imp.self_ty);
            if private_types.contains(&self_name) {
                // An impl of a private type is no one's API, but it may be a
                // helper of given code.
                private_item(api, &self_name, line, full, idents);
                return;
            }
            api.impls.entry(self_name.clone()).or_default().push((
                line,
                full.clone(),
                idents.clone(),
            ));
            let header = format!(
                "impl{} {}{}",
                generics_text(&imp.generics),
                imp.trait_
                    .as_ref()
                    .map(|(path, _)| format!("{} for ", tokens(path)))
                    .unwrap_or_default(),
                tokens(&imp.self_ty)
            );
            let owner = match &imp.trait_ {
                Some((path, _)) => {
                    let trait_name = tokens(path);
                    let key = format!("impl {trait_name} for {self_name}");
                    add(api, key, entry(header.clone()));
                    format!("<{self_name} as {trait_name}>")
                }
                None => self_name.clone(),
            };
            let in_trait = imp.trait_.is_some();
            for ii in &imp.items {
                let (key, sig, attrs, vis) = match ii {
                    ImplItem::Fn(f) => {
                        (f.sig.ident.to_string(), sig_text(&f.sig), &f.attrs, &f.vis)
                    }
                    ImplItem::Const(c) => (
                        c.ident.to_string(),
                        format!("const {}: {}", c.ident, tokens(&c.ty)),
                        &c.attrs,
                        &c.vis,
                    ),
                    ImplItem::Type(t) => (
                        t.ident.to_string(),
                        without_docs(t.to_token_stream()),
                        &t.attrs,
                        &t.vis,
                    ),
                    _ => continue,
                };
                if is_cfg_test(attrs) {
                    continue;
                }
                if !(in_trait || is_pub(vis)) {
                    // A private method: a possible helper of given code.
                    let (l, t) = (impl_item_line(ii), ii.to_token_stream());
                    private_item(api, &key, l, without_docs(t.clone()), idents_of(t));
                    continue;
                }
                let it = ApiItem {
                    line: impl_item_line(ii),
                    signature: format!("{header} {{ {sig} }}"),
                    docs: docs(attrs),
                    full: without_docs(ii.to_token_stream()),
                    idents: idents_of(ii.to_token_stream()),
                    type_name: None,
                };
                add(api, format!("{owner}::{key}"), it);
            }
        }
        _ => {
            if let Some(name) = private_name(item) {
                private_item(api, &name, line, full, idents);
            }
        }
    }
}

fn line_of(span: proc_macro2::Span) -> usize {
    span.start().line
}

/// The line of an item's name (not of its doc comment or attributes).
pub fn item_line(item: &Item) -> usize {
    line_of(match item {
        Item::Const(i) => i.ident.span(),
        Item::Enum(i) => i.ident.span(),
        Item::Fn(i) => i.sig.ident.span(),
        Item::Impl(i) => i.impl_token.span,
        Item::Macro(i) => i.mac.path.span(),
        Item::Mod(i) => i.ident.span(),
        Item::Static(i) => i.ident.span(),
        Item::Struct(i) => i.ident.span(),
        Item::Trait(i) => i.ident.span(),
        Item::Type(i) => i.ident.span(),
        Item::Union(i) => i.ident.span(),
        Item::Use(i) => i.use_token.span,
        other => other.span(),
    })
}

fn trait_item_line(item: &TraitItem) -> usize {
    line_of(match item {
        TraitItem::Fn(f) => f.sig.ident.span(),
        TraitItem::Const(c) => c.ident.span(),
        TraitItem::Type(t) => t.ident.span(),
        other => other.span(),
    })
}

fn impl_item_line(item: &ImplItem) -> usize {
    line_of(match item {
        ImplItem::Fn(f) => f.sig.ident.span(),
        ImplItem::Const(c) => c.ident.span(),
        ImplItem::Type(t) => t.ident.span(),
        other => other.span(),
    })
}

fn insert(api: &mut FileApi, prefix: &str, key: String, item: ApiItem) {
    let mut key = format!("{prefix}{key}");
    while api.items.contains_key(&key) {
        key.push('\'');
    }
    api.items.insert(key, item);
}

fn private_item(api: &mut FileApi, name: &str, line: usize, full: String, idents: Vec<String>) {
    let entry = api
        .private
        .entry(name.to_string())
        .or_insert_with(|| PrivateItem {
            line,
            full: String::new(),
            idents: Vec::new(),
        });
    entry.full.push_str(&full);
    entry.idents.extend(idents);
}

/// The name of a private top-level item that code could call or name.
fn private_name(item: &Item) -> Option<String> {
    Some(match item {
        Item::Fn(f) => f.sig.ident.to_string(),
        Item::Const(c) => c.ident.to_string(),
        Item::Static(s) => s.ident.to_string(),
        Item::Struct(s) => s.ident.to_string(),
        Item::Enum(e) => e.ident.to_string(),
        Item::Type(t) => t.ident.to_string(),
        Item::Macro(m) => m.ident.as_ref()?.to_string(),
        _ => return None,
    })
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}
