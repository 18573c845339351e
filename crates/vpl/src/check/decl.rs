//! Declarations: the type, function, connector, context and binding namespaces, stream cycles,
//! `event` fields and base events, type annotations, connector and context parameters, functions.

use super::{Checker, Local, BASIC_TYPES};
use crate::ast::*;
use crate::diagnostics::Diagnostic;
use std::collections::HashMap;

impl<'a> Checker<'a> {
    pub(super) fn collect_declarations(&mut self) {
        let program = self.program;
        // Event types and streams share the type namespace: a stream's outputs are typed by its name.
        let mut types: HashMap<&'a str, Span> = HashMap::new();
        for item in &program.items {
            match item {
                Item::Event(e) => {
                    self.dup_check(&mut types, &e.name, "type");
                    self.events.entry(&e.name.name).or_insert(e);
                }
                Item::Stream(s) => {
                    self.dup_check(&mut types, &s.name, "type");
                    self.streams.entry(&s.name.name).or_insert(s);
                }
                Item::Pattern(p) => {
                    self.dup_check(&mut types, &p.name, "type");
                    self.patterns.entry(&p.name.name).or_insert(p);
                }
                Item::Type(t) => {
                    self.dup_check(&mut types, &t.name, "type");
                    self.type_aliases.entry(&t.name.name).or_insert(t);
                }
                _ => {}
            }
        }
        let mut fns = HashMap::new();
        let mut connectors = HashMap::new();
        let mut contexts = HashMap::new();
        let mut globals = HashMap::new();
        for item in &program.items {
            match item {
                Item::Fn(f) => {
                    self.dup_check(&mut fns, &f.name, "function");
                    self.fns.entry(&f.name.name).or_insert(f);
                }
                Item::Connector(c) => {
                    self.dup_check(&mut connectors, &c.name, "connector");
                    self.connectors.entry(&c.name.name).or_insert(c);
                }
                Item::Context(c) => {
                    self.dup_check(&mut contexts, &c.name, "context");
                    self.contexts.entry(&c.name.name).or_insert(c);
                }
                Item::Binding(b) => {
                    self.dup_check(&mut globals, &b.name, "top-level binding");
                    self.globals.entry(&b.name.name).or_insert(b.kind);
                    if let ExprKind::Lambda { params, .. } = &b.value.kind {
                        // `let double = x => x * 2` is callable as `double(3)`.
                        self.dup_check(&mut fns, &b.name, "function");
                        self.lambdas.entry(&b.name.name).or_insert(params.len());
                    }
                }
                _ => {}
            }
        }
    }

    /// `type Name = T`: the aliased type must exist and must not refer back to the alias.
    pub(super) fn check_type_decl(&mut self, t: &'a TypeDecl) {
        self.check_type(&t.ty);
        let mut seen = vec![t.name.name.as_str()];
        let mut cur = &t.ty;
        while let TypeKind::Named(n) = &cur.kind {
            if seen.contains(&n.name.as_str()) {
                self.error_hint(
                    format!("type alias `{}` refers to itself", t.name.name),
                    t.span,
                    Some("an alias must end in a basic, event or structured type".into()),
                );
                return;
            }
            match self.type_aliases.get(n.name.as_str()) {
                Some(next) => {
                    seen.push(&next.name.name);
                    cur = &next.ty;
                }
                None => return,
            }
        }
    }

    pub(super) fn dup_check(
        &mut self,
        seen: &mut HashMap<&'a str, Span>,
        name: &'a Ident,
        what: &str,
    ) {
        if let Some(first) = seen.get(name.name.as_str()) {
            let first = *first;
            self.error_hint(
                format!("duplicate {what} name `{}`", name.name),
                name.span,
                Some(format!("first declared at line {}", first.line)),
            );
        } else {
            seen.insert(&name.name, name.span);
        }
    }

    /// Reports every cycle among streams (a stream reading, directly or not, its own outputs),
    /// found as back edges of an iterative depth-first search in declaration order.
    pub(super) fn check_stream_cycles(&mut self) {
        let streams: Vec<&'a StreamDecl> = self.program.streams().collect();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, s) in streams.iter().enumerate() {
            index.entry(s.name.name.as_str()).or_insert(i);
        }
        let edges: Vec<Vec<usize>> = streams
            .iter()
            .map(|s| {
                crate::correlate::stream_reads(self.program, s)
                    .iter()
                    .filter_map(|n| index.get(n.name.as_str()).copied())
                    .collect()
            })
            .collect();
        // 0 = unvisited, 1 = on the DFS stack, 2 = done.
        let mut color = vec![0u8; streams.len()];
        let mut found: Vec<(usize, String)> = Vec::new();
        for root in 0..streams.len() {
            if color[root] != 0 {
                continue;
            }
            color[root] = 1;
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            while let Some(top) = stack.last_mut() {
                let node = top.0;
                match edges[node].get(top.1).copied() {
                    Some(succ) => {
                        top.1 += 1;
                        match color[succ] {
                            0 => {
                                color[succ] = 1;
                                stack.push((succ, 0));
                            }
                            1 => {
                                let pos = stack.iter().position(|(n, _)| *n == succ).unwrap_or(0);
                                let mut names: Vec<&str> = stack[pos..]
                                    .iter()
                                    .map(|(n, _)| streams[*n].name.name.as_str())
                                    .collect();
                                names.push(streams[succ].name.name.as_str());
                                found.push((succ, names.join(" -> ")));
                            }
                            _ => {}
                        }
                    }
                    None => {
                        color[node] = 2;
                        stack.pop();
                    }
                }
            }
        }
        for (at, path) in found {
            self.error_hint(
                format!("stream cycle: {path}"),
                streams[at].name.span,
                Some(
                    "a stream cannot consume its own outputs, directly or through other streams"
                        .into(),
                ),
            );
        }
    }

    pub(super) fn check_event(&mut self, e: &'a EventDecl) {
        let mut seen = HashMap::new();
        for f in &e.fields {
            self.dup_check(&mut seen, &f.name, "field");
            self.check_type(&f.ty);
        }
        if let Some(base) = &e.extends {
            if !self.events.contains_key(base.name.as_str()) {
                self.error(format!("unknown base event `{}`", base.name), base.span);
                return;
            }
            // `extends` prepends the base's fields: the chain must end, and a field may not be
            // declared twice along it.
            let mut chain = vec![e.name.name.as_str()];
            let mut inherited: HashMap<&'a str, &'a str> = HashMap::new();
            let mut cur = self.events.get(base.name.as_str()).copied();
            while let Some(b) = cur {
                if chain.contains(&b.name.name.as_str()) {
                    chain.push(&b.name.name);
                    self.error_hint(
                        format!(
                            "event `{}` extends itself: {}",
                            e.name.name,
                            chain.join(" extends ")
                        ),
                        base.span,
                        Some("remove one `extends` from the cycle".into()),
                    );
                    return;
                }
                chain.push(&b.name.name);
                for f in &b.fields {
                    inherited.entry(&f.name.name).or_insert(&b.name.name);
                }
                cur = b
                    .extends
                    .as_ref()
                    .and_then(|x| self.events.get(x.name.as_str()).copied());
            }
            for f in &e.fields {
                if let Some(from) = inherited.get(f.name.name.as_str()) {
                    self.error_hint(
                        format!(
                            "field `{}` is already declared by base event `{from}`",
                            f.name.name
                        ),
                        f.name.span,
                        Some("`extends` prepends the base's fields; remove this one".into()),
                    );
                }
            }
        }
    }

    pub(super) fn check_type(&mut self, t: &TypeExpr) {
        match &t.kind {
            TypeKind::Named(n) => {
                let known = BASIC_TYPES.contains(&n.name.as_str())
                    || self.events.contains_key(n.name.as_str())
                    || self.streams.contains_key(n.name.as_str())
                    || self.type_aliases.contains_key(n.name.as_str());
                if !known {
                    let hint = self.capped_suggest(&n.name, BASIC_TYPES.iter().copied());
                    let mut d = Diagnostic::warning(format!("unknown type `{}`", n.name), n.span);
                    d.hint = hint.map(|h| format!("did you mean `{h}`?"));
                    self.diags.push(d);
                }
            }
            TypeKind::Array(t) | TypeKind::Optional(t) | TypeKind::Stream(t) => self.check_type(t),
            TypeKind::Map(k, v) => {
                self.check_type(k);
                self.check_type(v);
            }
            TypeKind::Tuple(ts) => {
                for t in ts {
                    self.check_type(t);
                }
            }
            TypeKind::Record(fields) => {
                for (i, (name, t)) in fields.iter().enumerate() {
                    if fields[..i].iter().any(|(n, _)| n.name == name.name) {
                        self.error(format!("duplicate field name `{}`", name.name), name.span);
                    }
                    self.check_type(t);
                }
            }
        }
    }

    /// Connector/context parameter values: literals, identifiers and arrays of those (§9).
    pub(super) fn check_param_value(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Name(_) => {}
            _ if super::scalar_literal_type(e).is_some() => {}
            ExprKind::Unary {
                op: UnaryOp::Neg,
                operand,
            } if matches!(operand.kind, ExprKind::Int(_) | ExprKind::Float(_)) => {}
            ExprKind::Array(items) => {
                for i in items {
                    self.check_param_value(i);
                }
            }
            _ => self.error("parameter values must be literals, names or arrays", e.span),
        }
    }

    pub(super) fn check_context(&mut self, c: &'a ContextDecl) {
        let mut seen = HashMap::new();
        for a in &c.params {
            self.check_param_value(&a.value);
            let Some(name) = &a.name else {
                self.error(
                    "context parameters need a name (e.g. `cores: [2, 3]`)",
                    a.span,
                );
                continue;
            };
            self.dup_check(&mut seen, name, "parameter");
            if name.name == "cores" {
                let ok = match &a.value.kind {
                    ExprKind::Array(items) => items
                        .iter()
                        .all(|i| matches!(i.kind, ExprKind::Int(n) if n >= 0)),
                    _ => false,
                };
                if !ok {
                    self.error(
                        "`cores` must be an array of non-negative integers, e.g. `[2, 3]`",
                        a.value.span,
                    );
                }
            } else {
                self.warn(
                    format!("unknown context parameter `{}`", name.name),
                    name.span,
                );
            }
        }
    }

    pub(super) fn check_fn(&mut self, f: &'a FnDecl) {
        let mut scope = HashMap::new();
        let mut seen = HashMap::new();
        for p in &f.params {
            self.dup_check(&mut seen, &p.name, "parameter");
            if let Some(t) = &p.ty {
                self.check_type(t);
            }
            scope.insert(p.name.name.as_str(), Local::Param);
        }
        if let Some(t) = &f.ret {
            self.check_type(t);
        }
        self.scopes = vec![scope];
        self.loop_depth = 0;
        self.block(&f.body);
        self.scopes.clear();
    }
}
