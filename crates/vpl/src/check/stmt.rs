//! Statements inside functions: scopes, `let/var/const` and `:=` mutability, loops, `break`,
//! `emit` fields and conditions.

use super::{binding_word, Checker, Local, Place, Ty};
use crate::ast::*;
use std::collections::HashMap;

impl<'a> Checker<'a> {
    pub(super) fn block(&mut self, b: &'a Block) {
        self.scopes.push(HashMap::new());
        for s in &b.stmts {
            self.stmt(s);
        }
        self.scopes.pop();
    }

    pub(super) fn lookup_local(&self, name: &str) -> Option<Local> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    pub(super) fn declare(&mut self, name: &'a str, l: Local) {
        if let Some(s) = self.scopes.last_mut() {
            s.insert(name, l);
        }
    }

    pub(super) fn stmt(&mut self, s: &'a Stmt) {
        match &s.kind {
            StmtKind::Binding(b) => {
                if let Some(t) = &b.ty {
                    self.check_type(t);
                }
                self.expr(&b.value, Place::Function);
                self.declare(&b.name.name, Local::Binding(b.kind));
            }
            StmtKind::Assign(a) => {
                self.expr(&a.value, Place::Function);
                let target = a.target.name.as_str();
                match self.lookup_local(target) {
                    Some(Local::Binding(BindingKind::Var)) => {}
                    Some(Local::Binding(k)) => self.assign_to_immutable(a, binding_word(k)),
                    Some(Local::Param) => self.assign_to_immutable(a, "parameter"),
                    Some(Local::LoopVar) => self.assign_to_immutable(a, "loop variable"),
                    None => match self.globals.get(target) {
                        Some(BindingKind::Var) => {}
                        Some(k) => {
                            let k = *k;
                            self.assign_to_immutable(a, binding_word(k));
                        }
                        None => self.error_hint(
                            format!("cannot assign to undeclared variable `{target}`"),
                            a.target.span,
                            Some(format!("declare it with `var {target} = …`")),
                        ),
                    },
                }
            }
            StmtKind::If {
                branches,
                else_body,
            } => {
                for br in branches {
                    self.condition(&br.cond, Place::Function, "`if` condition");
                    self.block(&br.body);
                }
                if let Some(b) = else_body {
                    self.block(b);
                }
            }
            StmtKind::While { cond, body } => {
                self.condition(cond, Place::Function, "`while` condition");
                self.loop_depth += 1;
                self.block(body);
                self.loop_depth -= 1;
            }
            StmtKind::For { var, iter, body } => {
                let t = self.expr(iter, Place::Function);
                if matches!(
                    t,
                    Ty::Float | Ty::Str | Ty::Bool | Ty::Duration | Ty::Timestamp
                ) {
                    self.error(
                        format!(
                            "cannot iterate over a {} (use a range, an array, a map or an int)",
                            t.name()
                        ),
                        iter.span,
                    );
                }
                self.loop_depth += 1;
                self.scopes.push(HashMap::new());
                self.declare(&var.name, Local::LoopVar);
                self.block(body);
                self.scopes.pop();
                self.loop_depth -= 1;
            }
            StmtKind::Break | StmtKind::Continue => {
                if self.loop_depth == 0 {
                    let word = if matches!(s.kind, StmtKind::Break) {
                        "break"
                    } else {
                        "continue"
                    };
                    self.error(format!("`{word}` outside of a loop"), s.span);
                }
            }
            StmtKind::Return(e) => {
                if let Some(e) = e {
                    self.expr(e, Place::Function);
                }
            }
            StmtKind::Emit { event_type, args } => {
                let _ = event_type;
                self.field_args(args, "emit", Place::Function);
            }
            StmtKind::Expr(e) => {
                self.expr(e, Place::Function);
            }
        }
    }

    /// Arguments that produce fields: `name: e` or a bare name; duplicates are errors.
    pub(super) fn field_args(&mut self, args: &'a [Arg], what: &str, place: Place) {
        let mut seen: HashMap<&'a str, Span> = HashMap::new();
        for a in args {
            self.expr(&a.value, place);
            let name = match (&a.name, &a.value.kind) {
                (Some(n), _) => n,
                (None, ExprKind::Name(n)) => n,
                (None, _) => {
                    self.error_hint(
                        format!("`{what}` fields need a name"),
                        a.span,
                        Some("write `field: expression`".into()),
                    );
                    continue;
                }
            };
            self.dup_check(&mut seen, name, "field");
        }
    }

    pub(super) fn condition(&mut self, e: &Expr, place: Place, what: &str) {
        let t = self.expr(e, place);
        if t.known() && t != Ty::Bool {
            self.error_hint(
                format!("type mismatch: {what} must be a bool, found {}", t.name()),
                e.span,
                Some("only `true` passes a condition".into()),
            );
        }
    }

    pub(super) fn assign_to_immutable(&mut self, a: &Assign, what: &str) {
        self.error_hint(
            format!(
                "cannot assign to `{}`: it is a {what}, not a `var`",
                a.target.name
            ),
            a.target.span,
            Some(format!(
                "declare it with `var {} = …` to make it mutable",
                a.target.name
            )),
        );
    }
}
