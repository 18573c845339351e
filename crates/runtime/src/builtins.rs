//! Scalar built-in functions (VPL.md §11.2), resolved by name at compile time to a plain function.
//!
//! Every built-in is pure: it receives evaluated arguments and returns a value. `null` arguments
//! propagate to `null` unless the function is about nulls (`is_null`, `type_of`, `get` defaults).
//! String functions count characters, not bytes.

use crate::error::RuntimeError;
use crate::limits::Limits;
use crate::value::{ArithOp, OpError, Value};
use std::cmp::Ordering;
use std::sync::Arc;

/// A built-in implementation: evaluated arguments and the budgets of the current event. Builtins
/// whose result may be much larger than their arguments check the size limits before
/// allocating; the caller charges the result to the memory budget.
pub(crate) type BuiltinFn = fn(&[Value], &Limits) -> Result<Value, RuntimeError>;

/// Looks up a scalar built-in by name.
pub(crate) fn lookup(name: &str) -> Option<BuiltinFn> {
    Some(match name {
        "abs" => |a, _| abs(a),
        "sqrt" => |a, _| float1(a, f64::sqrt),
        "log" => |a, _| float1(a, f64::ln),
        "log10" => |a, _| float1(a, f64::log10),
        "exp" => |a, _| float1(a, f64::exp),
        "sin" => |a, _| float1(a, f64::sin),
        "cos" => |a, _| float1(a, f64::cos),
        "tan" => |a, _| float1(a, f64::tan),
        "floor" => |a, _| to_int_rounded(a, f64::floor),
        "ceil" => |a, _| to_int_rounded(a, f64::ceil),
        "round" => |a, _| round(a),
        "pow" => |a, _| arg(a, 0).arith(ArithOp::Pow, arg(a, 1)).or_else(op_null),
        "min" => |a, _| min_max(a, Ordering::Less),
        "max" => |a, _| min_max(a, Ordering::Greater),
        "len" => |a, _| len(a),
        "lower" => |a, _| str1(a, |s| s.to_lowercase()),
        "upper" => |a, _| str1(a, |s| s.to_uppercase()),
        "trim" => |a, _| str1(a, |s| s.trim().to_string()),
        "split" => split,
        "join" => join,
        "replace" => replace,
        "starts_with" => |a, _| str_pred(a, |s, p| s.starts_with(p)),
        "ends_with" => |a, _| str_pred(a, |s, p| s.ends_with(p)),
        "contains" => |a, _| Ok(arg(a, 0).contains(arg(a, 1))?),
        "substring" => |a, _| substring(a),
        "to_string" => to_string,
        "to_int" => |a, _| to_int(a),
        "to_float" => |a, _| to_float(a),
        "first" => |a, _| array1(a, |v| v.first().cloned().unwrap_or(Value::Null)),
        "last" => |a, _| array1(a, |v| v.last().cloned().unwrap_or(Value::Null)),
        "push" => |a, _| push(a),
        "pop" => |a, _| {
            array1(a, |v| {
                Value::Array(Arc::new(v[..v.len().saturating_sub(1)].to_vec()))
            })
        },
        "reverse" => |a, _| reverse(a),
        "sort" => |a, _| sort(a),
        "keys" => |a, _| {
            map1(a, |m| {
                m.iter().map(|(k, _)| Value::Str(k.clone())).collect()
            })
        },
        "values" => |a, _| map1(a, |m| m.iter().map(|(_, v)| v.clone()).collect()),
        "get" => |a, _| get(a),
        "set" => |a, _| set(a),
        "range" => range,
        "sum" => |a, _| sum(a),
        "flatten" => flatten,
        "sliding_pairs" => sliding_pairs,
        "variance" => |a, _| variance(a),
        "avg" => |a, _| avg(a),
        "type_of" => |a, _| Ok(Value::str(arg(a, 0).type_name())),
        "is_null" => |a, _| Ok(Value::Bool(arg(a, 0).is_null())),
        "is_int" => |a, _| Ok(Value::Bool(matches!(arg(a, 0), Value::Int(_)))),
        "is_float" => |a, _| Ok(Value::Bool(matches!(arg(a, 0), Value::Float(_)))),
        "is_string" => |a, _| Ok(Value::Bool(matches!(arg(a, 0), Value::Str(_)))),
        "is_bool" => |a, _| Ok(Value::Bool(matches!(arg(a, 0), Value::Bool(_)))),
        "is_array" => |a, _| Ok(Value::Bool(matches!(arg(a, 0), Value::Array(_)))),
        "is_map" => |a, _| Ok(Value::Bool(matches!(arg(a, 0), Value::Map(_)))),
        _ => return None,
    })
}

static NULL: Value = Value::Null;

fn arg(a: &[Value], i: usize) -> &Value {
    a.get(i).unwrap_or(&NULL)
}

fn op_null(e: OpError) -> Result<Value, RuntimeError> {
    match e {
        OpError::DivisionByZero => Ok(Value::Null),
        other => Err(other.into()),
    }
}

fn type_err(func: &str, what: &str, got: &Value) -> RuntimeError {
    RuntimeError::Type(format!("`{func}` needs {what}, got {}", got.type_name()))
}

fn abs(a: &[Value]) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => i
            .checked_abs()
            .map(Value::Int)
            .ok_or(RuntimeError::Overflow("abs")),
        Value::Float(f) => Ok(Value::Float(f.abs())),
        Value::Duration(d) => d
            .checked_abs()
            .map(Value::Duration)
            .ok_or(RuntimeError::Overflow("abs")),
        other => Err(type_err("abs", "a number", other)),
    }
}

fn float1(a: &[Value], f: fn(f64) -> f64) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Null => Ok(Value::Null),
        v => v
            .as_f64()
            .map(|x| Value::Float(f(x)))
            .ok_or_else(|| type_err("math function", "a number", v)),
    }
}

fn float_to_int(f: f64, func: &'static str) -> Result<Value, RuntimeError> {
    if f.is_nan() || f < i64::MIN as f64 || f >= i64::MAX as f64 {
        return Err(RuntimeError::Overflow(func));
    }
    Ok(Value::Int(f as i64))
}

fn to_int_rounded(a: &[Value], f: fn(f64) -> f64) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => Ok(Value::Int(*i)),
        Value::Float(x) => float_to_int(f(*x), "floor/ceil"),
        other => Err(type_err("floor/ceil", "a number", other)),
    }
}

/// `round(x)` → int (half away from zero); `round(x, n)` → float with n decimals.
fn round(a: &[Value]) -> Result<Value, RuntimeError> {
    match (arg(a, 0), a.get(1)) {
        (Value::Null, _) => Ok(Value::Null),
        (Value::Int(i), None) => Ok(Value::Int(*i)),
        (Value::Float(x), None) => float_to_int(x.round(), "round"),
        (v, Some(Value::Int(n))) => {
            let x = v.as_f64().ok_or_else(|| type_err("round", "a number", v))?;
            let p = 10f64.powi((*n).clamp(-300, 300) as i32);
            Ok(Value::Float((x * p).round() / p))
        }
        (v, Some(Value::Null)) if v.as_f64().is_some() => Ok(Value::Null),
        (v, _) => Err(type_err("round", "a number (and int decimals)", v)),
    }
}

fn min_max(a: &[Value], want: Ordering) -> Result<Value, RuntimeError> {
    let pick = |best: &Value, v: &Value| -> Option<bool> { v.vpl_cmp(best).map(|o| o == want) };
    if a.len() == 1 {
        return match arg(a, 0) {
            Value::Null => Ok(Value::Null),
            Value::Array(items) => {
                let mut best: Option<&Value> = None;
                for v in items.iter().filter(|v| !v.is_null()) {
                    best = match best {
                        None => Some(v),
                        Some(b) => match pick(b, v) {
                            Some(true) => Some(v),
                            Some(false) => Some(b),
                            None => return Err(type_err("min/max", "comparable values", v)),
                        },
                    };
                }
                Ok(best.cloned().unwrap_or(Value::Null))
            }
            other => Err(type_err("min/max", "an array or two values", other)),
        };
    }
    let (x, y) = (arg(a, 0), arg(a, 1));
    if x.is_null() || y.is_null() {
        return Ok(Value::Null);
    }
    match pick(x, y) {
        Some(true) => Ok(y.clone()),
        Some(false) => Ok(x.clone()),
        None => Err(RuntimeError::Type(format!(
            "`min`/`max` cannot compare {} and {}",
            x.type_name(),
            y.type_name()
        ))),
    }
}

fn len(a: &[Value]) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Str(s) => Ok(Value::Int(s.chars().count() as i64)),
        Value::Array(v) => Ok(Value::Int(v.len() as i64)),
        Value::Map(m) => Ok(Value::Int(m.len() as i64)),
        other => Err(type_err("len", "a string, array or map", other)),
    }
}

fn str1(a: &[Value], f: fn(&str) -> String) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Str(s) => Ok(Value::Str(Arc::from(f(s)))),
        other => Err(type_err("string function", "a string", other)),
    }
}

fn str_pred(a: &[Value], f: fn(&str, &str) -> bool) -> Result<Value, RuntimeError> {
    match (arg(a, 0), arg(a, 1)) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Str(s), Value::Str(p)) => Ok(Value::Bool(f(s, p))),
        (x, _) => Err(type_err("starts_with/ends_with", "two strings", x)),
    }
}

fn split(a: &[Value], limits: &Limits) -> Result<Value, RuntimeError> {
    match (arg(a, 0), arg(a, 1)) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Str(s), Value::Str(sep)) => {
            let n = if sep.is_empty() {
                s.chars().count()
            } else {
                s.matches(&**sep).count() + 1
            };
            limits.check_len(n)?;
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars()
                    .map(|c| Value::Str(Arc::from(c.to_string())))
                    .collect()
            } else {
                s.split(&**sep).map(Value::str).collect()
            };
            Ok(Value::Array(Arc::new(parts)))
        }
        (x, _) => Err(type_err("split", "two strings", x)),
    }
}

fn join(a: &[Value], limits: &Limits) -> Result<Value, RuntimeError> {
    match (arg(a, 0), arg(a, 1)) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Array(items), Value::Str(sep)) => {
            let mut total = sep.len().saturating_mul(items.len());
            for v in items.iter() {
                total = total.saturating_add(limits.check_text(v)?);
                limits.check_string(total)?;
            }
            let parts: Vec<String> = items.iter().map(|v| v.to_string()).collect();
            Ok(Value::Str(Arc::from(parts.join(sep))))
        }
        (x, _) => Err(type_err("join", "an array and a string", x)),
    }
}

fn replace(a: &[Value], limits: &Limits) -> Result<Value, RuntimeError> {
    match (arg(a, 0), arg(a, 1), arg(a, 2)) {
        (Value::Null, _, _) | (_, Value::Null, _) | (_, _, Value::Null) => Ok(Value::Null),
        (Value::Str(s), Value::Str(from), Value::Str(to)) => {
            if from.is_empty() {
                return Ok(Value::Str(s.clone()));
            }
            if to.len() > from.len() {
                let grow = (to.len() - from.len()).saturating_mul(s.matches(&**from).count());
                limits.check_string(s.len().saturating_add(grow))?;
            }
            Ok(Value::Str(Arc::from(s.replace(&**from, to))))
        }
        (x, _, _) => Err(type_err("replace", "three strings", x)),
    }
}

fn substring(a: &[Value]) -> Result<Value, RuntimeError> {
    let s = match arg(a, 0) {
        Value::Null => return Ok(Value::Null),
        Value::Str(s) => s,
        other => return Err(type_err("substring", "a string", other)),
    };
    let end = a.get(2).cloned().unwrap_or(Value::Null);
    Ok(Value::Str(s.clone()).slice(arg(a, 1), &end)?)
}

fn to_int(a: &[Value]) -> Result<Value, RuntimeError> {
    Ok(match arg(a, 0) {
        Value::Int(i) => Value::Int(*i),
        Value::Float(f) => return float_to_int(f.trunc(), "to_int"),
        Value::Bool(b) => Value::Int(*b as i64),
        Value::Str(s) => {
            let t = s.trim();
            match t.parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => match t.parse::<f64>() {
                    Ok(f) if f.is_finite() => return float_to_int(f.trunc(), "to_int"),
                    _ => Value::Null,
                },
            }
        }
        Value::Timestamp(t) | Value::Duration(t) => Value::Int(*t),
        _ => Value::Null,
    })
}

fn to_float(a: &[Value]) -> Result<Value, RuntimeError> {
    Ok(match arg(a, 0) {
        Value::Int(i) => Value::Float(*i as f64),
        Value::Float(f) => Value::Float(*f),
        Value::Bool(b) => Value::Float(*b as i64 as f64),
        Value::Str(s) => s
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .unwrap_or(Value::Null),
        _ => Value::Null,
    })
}

fn array1(a: &[Value], f: impl Fn(&Vec<Value>) -> Value) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Array(v) => Ok(f(v)),
        other => Err(type_err("array function", "an array", other)),
    }
}

fn map1(
    a: &[Value],
    f: impl Fn(&crate::value::Fields) -> Vec<Value>,
) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Map(m) => Ok(Value::Array(Arc::new(f(m)))),
        other => Err(type_err("keys/values", "a map", other)),
    }
}

fn push(a: &[Value]) -> Result<Value, RuntimeError> {
    array1(a, |v| {
        let mut n = Vec::with_capacity(v.len() + 1);
        n.extend(v.iter().cloned());
        n.push(arg(a, 1).clone());
        Value::Array(Arc::new(n))
    })
}

fn reverse(a: &[Value]) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Str(s) => Ok(Value::Str(Arc::from(s.chars().rev().collect::<String>()))),
        _ => array1(a, |v| {
            Value::Array(Arc::new(v.iter().rev().cloned().collect()))
        }),
    }
}

fn sort(a: &[Value]) -> Result<Value, RuntimeError> {
    array1(a, |v| {
        let mut n = v.clone();
        n.sort_by(|x, y| x.sort_cmp(y));
        Value::Array(Arc::new(n))
    })
}

fn get(a: &[Value]) -> Result<Value, RuntimeError> {
    let default = a.get(2).cloned().unwrap_or(Value::Null);
    let v = match (arg(a, 0), arg(a, 1)) {
        (Value::Map(_), Value::Str(_)) | (Value::Array(_), Value::Int(_)) => {
            arg(a, 0).index(arg(a, 1))?
        }
        (Value::Null, _) | (_, Value::Null) => Value::Null,
        (x, _) => {
            return Err(type_err(
                "get",
                "a map with a string key or an array with an int",
                x,
            ))
        }
    };
    Ok(if v.is_null() { default } else { v })
}

fn set(a: &[Value]) -> Result<Value, RuntimeError> {
    match (arg(a, 0), arg(a, 1)) {
        (Value::Map(m), Value::Str(k)) => {
            let mut n = (**m).clone();
            match n.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = arg(a, 2).clone(),
                None => n.push((k.clone(), arg(a, 2).clone())),
            }
            Ok(Value::Map(Arc::new(n)))
        }
        (Value::Array(v), Value::Int(i)) => {
            let len = v.len() as i64;
            let idx = if *i < 0 { len + i } else { *i };
            if !(0..len).contains(&idx) {
                return Err(RuntimeError::Type(format!(
                    "`set` index {i} out of range for length {len}"
                )));
            }
            let mut n = (**v).clone();
            n[idx as usize] = arg(a, 2).clone();
            Ok(Value::Array(Arc::new(n)))
        }
        (Value::Null, _) => Ok(Value::Null),
        (x, _) => Err(type_err(
            "set",
            "a map with a string key or an array with an int",
            x,
        )),
    }
}

/// Materializes `lo..hi` (exclusive), refusing more elements than the collection limit.
pub(crate) fn range_array(lo: i64, hi: i64, limits: &Limits) -> Result<Value, RuntimeError> {
    let n = hi.saturating_sub(lo).max(0);
    limits.check_len(usize::try_from(n).unwrap_or(usize::MAX))?;
    Ok(Value::Array(Arc::new((lo..hi).map(Value::Int).collect())))
}

/// `to_string(v)`: the text form, refused when it would exceed the string limit.
fn to_string(a: &[Value], limits: &Limits) -> Result<Value, RuntimeError> {
    let v = arg(a, 0);
    if matches!(v, Value::Array(_) | Value::Map(_)) {
        limits.check_text(v)?;
    }
    Ok(Value::Str(Arc::from(v.to_string())))
}

fn range(a: &[Value], limits: &Limits) -> Result<Value, RuntimeError> {
    let (lo, hi) = if a.len() == 1 {
        (&Value::Int(0), arg(a, 0))
    } else {
        (arg(a, 0), arg(a, 1))
    };
    match (lo, hi) {
        (Value::Int(l), Value::Int(h)) => range_array(*l, *h, limits),
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (x, _) => Err(type_err("range", "ints", x)),
    }
}

fn sum(a: &[Value]) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Array(v) => {
            let mut acc = Value::Int(0);
            for x in v.iter().filter(|x| !x.is_null()) {
                if x.as_f64().is_none() {
                    return Err(type_err("sum", "numbers", x));
                }
                acc = acc.arith(ArithOp::Add, x)?;
            }
            Ok(acc)
        }
        other => Err(type_err("sum", "an array", other)),
    }
}

/// `flatten(xs)`: the elements of the arrays in `xs` (one level), other elements as they are.
fn flatten(a: &[Value], limits: &Limits) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Array(v) => {
            let n: usize = v
                .iter()
                .map(|x| match x {
                    Value::Array(inner) => inner.len(),
                    _ => 1,
                })
                .sum();
            limits.check_len(n)?;
            let mut out = Vec::with_capacity(n);
            for x in v.iter() {
                match x {
                    Value::Array(inner) => out.extend(inner.iter().cloned()),
                    other => out.push(other.clone()),
                }
            }
            Ok(Value::Array(Arc::new(out)))
        }
        other => Err(type_err("flatten", "an array", other)),
    }
}

/// `sliding_pairs(xs)`: `[[x0, x1], [x1, x2], …]`.
fn sliding_pairs(a: &[Value], limits: &Limits) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Array(v) => {
            limits.check_len(v.len().saturating_sub(1))?;
            Ok(Value::Array(Arc::new(
                v.windows(2)
                    .map(|w| Value::Array(Arc::new(w.to_vec())))
                    .collect(),
            )))
        }
        other => Err(type_err("sliding_pairs", "an array", other)),
    }
}

/// `variance(xs)`: sample variance of the numbers in `xs` (`null` with fewer than two).
fn variance(a: &[Value]) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Array(v) => {
            let mut xs = Vec::with_capacity(v.len());
            for x in v.iter().filter(|x| !x.is_null()) {
                xs.push(
                    x.as_f64()
                        .ok_or_else(|| type_err("variance", "numbers", x))?,
                );
            }
            Ok(sample_variance(&xs)
                .map(Value::Float)
                .unwrap_or(Value::Null))
        }
        other => Err(type_err("variance", "an array", other)),
    }
}

/// Sample variance (n - 1), `None` for fewer than two values.
pub(crate) fn sample_variance(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    Some(xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0))
}

fn avg(a: &[Value]) -> Result<Value, RuntimeError> {
    match arg(a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Array(v) => {
            let mut total = 0.0;
            let mut n = 0usize;
            for x in v.iter().filter(|x| !x.is_null()) {
                total += x.as_f64().ok_or_else(|| type_err("avg", "numbers", x))?;
                n += 1;
            }
            Ok(if n == 0 {
                Value::Null
            } else {
                Value::Float(total / n as f64)
            })
        }
        other => Err(type_err("avg", "an array", other)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> Value {
        lookup(name)
            .map(|f| f(args, &Limits::default()))
            .unwrap_or(Ok(Value::str("missing")))
            .unwrap_or(Value::str("error"))
    }

    #[test]
    fn rounding_returns_int() {
        assert!(matches!(
            call("floor", &[Value::Float(-1.5)]),
            Value::Int(-2)
        ));
        assert!(matches!(call("ceil", &[Value::Float(1.2)]), Value::Int(2)));
        assert!(matches!(call("round", &[Value::Float(2.5)]), Value::Int(3)));
    }

    #[test]
    fn strings_count_characters() {
        assert!(matches!(call("len", &[Value::str("héllo")]), Value::Int(5)));
        assert!(
            matches!(call("substring", &[Value::str("héllo"), Value::Int(1), Value::Int(3)]), Value::Str(s) if &*s == "él")
        );
    }

    #[test]
    fn sum_keeps_int_when_all_int() {
        let arr = Value::Array(Arc::new(vec![Value::Int(1), Value::Int(2)]));
        assert!(matches!(call("sum", &[arr]), Value::Int(3)));
        let arr = Value::Array(Arc::new(vec![Value::Int(1), Value::Float(0.5)]));
        assert!(matches!(call("sum", &[arr]), Value::Float(f) if f == 1.5));
    }
}
