//! Lambdas (Tier 3): `filter(xs, x => …)`, `map`, `any`, `all`, and `(a, b) => …` over pairs.
//!
//! A lambda is compiled inline where it is used: its parameters become fresh local slots of the
//! current frame (so its body can read the enclosing function's locals), and the calling built-in
//! binds them for each element. Every element counts as one loop step against the step budget.
//! A two-parameter lambda destructures each element: `sliding_pairs(xs).map((a, b) => b - a)`.

use super::{Compiler, Ctx, ExprFn, RuntimeError};
use crate::value::Value;
use std::collections::HashMap;
use std::sync::Arc;
use varpulis_vpl::ast::{Expr, Ident};

/// What a lambda-taking built-in does with the lambda's results.
#[derive(Clone, Copy)]
enum Use {
    Filter,
    Map,
    Any,
    All,
}

impl Compiler {
    /// `name(arr, params => body)` for `filter`, `map`, `any` and `all`.
    pub(super) fn lambda_call(
        &mut self,
        name: &str,
        arr: &Expr,
        params: &[Ident],
        body: &Expr,
    ) -> ExprFn {
        let arr = self.expr(arr);
        self.scopes.push(HashMap::new());
        let slots: Vec<usize> = params
            .iter()
            .map(|p| self.declare_local(&p.name, false))
            .collect();
        let body = self.expr(body);
        self.scopes.pop();
        let how = match name {
            "filter" => Use::Filter,
            "map" => Use::Map,
            "any" => Use::Any,
            _ => Use::All,
        };
        let name: Arc<str> = Arc::from(name);
        Box::new(move |cx| {
            let items = match arr(cx)? {
                Value::Null => return Ok(Value::Null),
                Value::Array(a) => a,
                other => {
                    return Err(RuntimeError::Type(format!(
                        "`{name}` needs an array, got {}",
                        other.type_name()
                    )))
                }
            };
            let mut kept = Vec::new();
            for item in items.iter() {
                cx.st.step()?;
                bind(cx, &slots, item);
                let v = body(cx)?;
                match how {
                    Use::Filter => {
                        if v.is_true() {
                            kept.push(item.clone());
                        }
                    }
                    Use::Map => kept.push(v),
                    Use::Any => {
                        if v.is_true() {
                            return Ok(Value::Bool(true));
                        }
                    }
                    Use::All => {
                        if !v.is_true() {
                            return Ok(Value::Bool(false));
                        }
                    }
                }
            }
            let out = match how {
                Use::Any => Value::Bool(false),
                Use::All => Value::Bool(true),
                Use::Filter | Use::Map => Value::Array(Arc::new(kept)),
            };
            cx.st.charge(&out)?;
            Ok(out)
        })
    }
}

/// Binds one element to the lambda's parameter slots (two parameters destructure a pair).
fn bind(cx: &mut Ctx<'_>, slots: &[usize], item: &Value) {
    let Some(&last) = slots.iter().max() else {
        return;
    };
    let need = cx.st.base + last + 1;
    if cx.st.stack.len() < need {
        cx.st.stack.resize(need, Value::Null);
    }
    match slots {
        [one] => cx.st.stack[cx.st.base + one] = item.clone(),
        many => {
            for (i, slot) in many.iter().enumerate() {
                let v = match item {
                    Value::Array(a) => a.get(i).cloned().unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                cx.st.stack[cx.st.base + slot] = v;
            }
        }
    }
}
