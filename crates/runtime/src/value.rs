//! Runtime values and their operators (VPL.md §3).
//!
//! Invariants: `int ∘ int` stays int (`/` truncates toward zero, `%` takes the dividend's sign),
//! a float operand makes the result float, integer overflow is an error, division by zero yields
//! `null` (the caller counts it), and `null` propagates through arithmetic and ordering.
//! Composite values are reference-counted so cloning a value never copies its contents.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// An ordered list of named values: event fields and map entries.
pub type Fields = Vec<(Arc<str>, Value)>;

/// A VPL value.
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// Absence of a value; also what an absent field reads as.
    #[default]
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// 64-bit signed integer.
    Int(i64),
    /// 64-bit float.
    Float(f64),
    /// Immutable UTF-8 text.
    Str(Arc<str>),
    /// Array of values.
    Array(Arc<Vec<Value>>),
    /// Map with string keys, in insertion order.
    Map(Arc<Fields>),
    /// Nanoseconds since the Unix epoch.
    Timestamp(i64),
    /// Nanoseconds.
    Duration(i64),
}

/// Why an operator could not produce a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// Integer overflow (a runtime error per §3).
    Overflow(&'static str),
    /// Division or remainder by zero: the result is `null`, the engine counts it.
    DivisionByZero,
    /// Operand types the operator does not accept.
    Type(String),
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Overflow(op) => write!(f, "integer overflow in `{op}`"),
            OpError::DivisionByZero => write!(f, "division by zero"),
            OpError::Type(msg) => f.write_str(msg),
        }
    }
}

/// Binary arithmetic and bitwise operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `**`
    Pow,
    /// `&`
    BitAnd,
    /// `|`
    BitOr,
    /// `^`
    BitXor,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
}

impl ArithOp {
    /// The operator's source spelling.
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Rem => "%",
            ArithOp::Pow => "**",
            ArithOp::BitAnd => "&",
            ArithOp::BitOr => "|",
            ArithOp::BitXor => "^",
            ArithOp::Shl => "<<",
            ArithOp::Shr => ">>",
        }
    }
}

impl Value {
    /// Builds a string value.
    pub fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }

    /// Whether the value is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether the value is exactly `true` (the rule for every boolean position).
    pub fn is_true(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    /// The VPL type name (`type_of`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Timestamp(_) => "timestamp",
            Value::Duration(_) => "duration",
        }
    }

    /// Numeric view (int or float) as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Looks up a map entry (or returns `None` for non-maps).
    pub fn map_get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m.iter().find(|(k, _)| &**k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Applies a binary arithmetic/bitwise operator.
    pub fn arith(&self, op: ArithOp, rhs: &Value) -> Result<Value, OpError> {
        use Value::*;
        match (self, rhs) {
            (Null, _) | (_, Null) => Ok(Null),
            (Int(a), Int(b)) => int_arith(op, *a, *b),
            (Int(_) | Float(_), Int(_) | Float(_)) => {
                let (a, b) = (self.as_f64().unwrap_or(0.0), rhs.as_f64().unwrap_or(0.0));
                float_arith(op, a, b, self, rhs)
            }
            (Str(a), Str(b)) if op == ArithOp::Add => {
                let mut s = String::with_capacity(a.len() + b.len());
                s.push_str(a);
                s.push_str(b);
                Ok(Str(Arc::from(s)))
            }
            (Array(a), Array(b)) if op == ArithOp::Add => {
                let mut v = Vec::with_capacity(a.len() + b.len());
                v.extend(a.iter().cloned());
                v.extend(b.iter().cloned());
                Ok(Array(Arc::new(v)))
            }
            (Bool(a), Bool(b)) => match op {
                ArithOp::BitAnd => Ok(Bool(a & b)),
                ArithOp::BitOr => Ok(Bool(a | b)),
                ArithOp::BitXor => Ok(Bool(a ^ b)),
                _ => Err(type_err(op, self, rhs)),
            },
            (Timestamp(t), Duration(d)) => match op {
                ArithOp::Add => t
                    .checked_add(*d)
                    .map(Timestamp)
                    .ok_or(OpError::Overflow("+")),
                ArithOp::Sub => t
                    .checked_sub(*d)
                    .map(Timestamp)
                    .ok_or(OpError::Overflow("-")),
                _ => Err(type_err(op, self, rhs)),
            },
            (Duration(d), Timestamp(t)) if op == ArithOp::Add => t
                .checked_add(*d)
                .map(Timestamp)
                .ok_or(OpError::Overflow("+")),
            (Timestamp(a), Timestamp(b)) if op == ArithOp::Sub => a
                .checked_sub(*b)
                .map(Duration)
                .ok_or(OpError::Overflow("-")),
            (Duration(a), Duration(b)) => match op {
                ArithOp::Add | ArithOp::Sub | ArithOp::Rem => match int_arith(op, *a, *b)? {
                    Int(v) => Ok(Duration(v)),
                    other => Ok(other),
                },
                ArithOp::Div => int_arith(op, *a, *b),
                _ => Err(type_err(op, self, rhs)),
            },
            (Duration(d), Int(n)) | (Int(n), Duration(d))
                if op == ArithOp::Mul || (op == ArithOp::Div && matches!(self, Duration(_))) =>
            {
                match int_arith(op, *d, *n)? {
                    Int(v) => Ok(Duration(v)),
                    other => Ok(other),
                }
            }
            _ => Err(type_err(op, self, rhs)),
        }
    }

    /// Unary minus.
    pub fn neg(&self) -> Result<Value, OpError> {
        match self {
            Value::Null => Ok(Value::Null),
            Value::Int(i) => i
                .checked_neg()
                .map(Value::Int)
                .ok_or(OpError::Overflow("-")),
            Value::Float(f) => Ok(Value::Float(-f)),
            Value::Duration(d) => d
                .checked_neg()
                .map(Value::Duration)
                .ok_or(OpError::Overflow("-")),
            other => Err(OpError::Type(format!(
                "cannot negate a {}",
                other.type_name()
            ))),
        }
    }

    /// Unary `~` (bitwise not on int).
    pub fn bit_not(&self) -> Result<Value, OpError> {
        match self {
            Value::Null => Ok(Value::Null),
            Value::Int(i) => Ok(Value::Int(!i)),
            other => Err(OpError::Type(format!(
                "`~` needs an int, got {}",
                other.type_name()
            ))),
        }
    }

    /// Prefix `not`: `not null` is `null`, non-booleans are a type error.
    pub fn not(&self) -> Result<Value, OpError> {
        match self {
            Value::Null => Ok(Value::Null),
            Value::Bool(b) => Ok(Value::Bool(!b)),
            other => Err(OpError::Type(format!(
                "`not` needs a bool, got {}",
                other.type_name()
            ))),
        }
    }

    /// VPL equality: numbers compare numerically, different types are unequal, `null == null`.
    pub fn vpl_eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Int(_) | Float(_), Int(_) | Float(_)) => self.as_f64() == other.as_f64(),
            (Str(a), Str(b)) => a == b,
            (Timestamp(a), Timestamp(b)) | (Duration(a), Duration(b)) => a == b,
            (Array(a), Array(b)) => {
                Arc::ptr_eq(a, b)
                    || (a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.vpl_eq(y)))
            }
            (Map(a), Map(b)) => {
                Arc::ptr_eq(a, b)
                    || a.len() == b.len()
                        && a.iter()
                            .all(|(k, v)| other.map_get(k).is_some_and(|w| v.vpl_eq(w)))
            }
            _ => false,
        }
    }

    /// VPL ordering: `None` when the values are incomparable (the comparison yields `null`).
    pub fn vpl_cmp(&self, other: &Value) -> Option<Ordering> {
        use Value::*;
        match (self, other) {
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (Int(_) | Float(_), Int(_) | Float(_)) => self.as_f64()?.partial_cmp(&other.as_f64()?),
            (Str(a), Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Bool(a), Bool(b)) => Some(a.cmp(b)),
            (Timestamp(a), Timestamp(b)) | (Duration(a), Duration(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Total order used by `sort`: null < bool < numbers < strings < others; NaN last among numbers.
    pub fn sort_cmp(&self, other: &Value) -> Ordering {
        fn rank(v: &Value) -> u8 {
            match v {
                Value::Null => 0,
                Value::Bool(_) => 1,
                Value::Int(_) | Value::Float(_) => 2,
                Value::Str(_) => 3,
                Value::Timestamp(_) => 4,
                Value::Duration(_) => 5,
                Value::Array(_) => 6,
                Value::Map(_) => 7,
            }
        }
        match (rank(self), rank(other)) {
            (a, b) if a != b => a.cmp(&b),
            _ => match self.vpl_cmp(other) {
                Some(o) => o,
                None => {
                    let (a, b) = (self.as_f64(), other.as_f64());
                    match (a.map(f64::is_nan), b.map(f64::is_nan)) {
                        (Some(true), Some(false)) => Ordering::Greater,
                        (Some(false), Some(true)) => Ordering::Less,
                        _ => Ordering::Equal,
                    }
                }
            },
        }
    }

    /// `a in b`: array membership, map key, substring. `null` container → `null`.
    pub fn contains(&self, item: &Value) -> Result<Value, OpError> {
        match self {
            Value::Null => Ok(Value::Null),
            Value::Array(a) => Ok(Value::Bool(a.iter().any(|v| v.vpl_eq(item)))),
            Value::Map(_) => match item {
                Value::Str(k) => Ok(Value::Bool(self.map_get(k).is_some())),
                _ => Ok(Value::Bool(false)),
            },
            Value::Str(s) => match item {
                Value::Str(sub) => Ok(Value::Bool(s.contains(&**sub))),
                Value::Null => Ok(Value::Null),
                other => Err(OpError::Type(format!(
                    "`in` on a string needs a string, got {}",
                    other.type_name()
                ))),
            },
            other => Err(OpError::Type(format!(
                "`in` needs an array, map or string, got {}",
                other.type_name()
            ))),
        }
    }

    /// `a[i]`: arrays and strings by (possibly negative) index, maps by key. Out of range → `null`.
    pub fn index(&self, idx: &Value) -> Result<Value, OpError> {
        match (self, idx) {
            (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
            (Value::Array(a), Value::Int(i)) => Ok(norm_index(*i, a.len())
                .map(|i| a[i].clone())
                .unwrap_or(Value::Null)),
            (Value::Str(s), Value::Int(i)) => {
                let n = s.chars().count();
                Ok(norm_index(*i, n)
                    .and_then(|i| s.chars().nth(i))
                    .map(|c| Value::Str(Arc::from(c.to_string())))
                    .unwrap_or(Value::Null))
            }
            (Value::Map(_), Value::Str(k)) => Ok(self.map_get(k).cloned().unwrap_or(Value::Null)),
            (a, b) => Err(OpError::Type(format!(
                "cannot index a {} with a {}",
                a.type_name(),
                b.type_name()
            ))),
        }
    }

    /// `a[lo:hi]` on arrays and strings (bounds clamp; negative counts from the end).
    pub fn slice(&self, lo: &Value, hi: &Value) -> Result<Value, OpError> {
        let bound = |v: &Value, len: usize, default: usize| -> Result<usize, OpError> {
            match v {
                Value::Null => Ok(default),
                Value::Int(i) => {
                    let i = if *i < 0 { len as i64 + i } else { *i };
                    Ok(i.clamp(0, len as i64) as usize)
                }
                other => Err(OpError::Type(format!(
                    "slice bound must be an int, got {}",
                    other.type_name()
                ))),
            }
        };
        match self {
            Value::Null => Ok(Value::Null),
            Value::Array(a) => {
                let (l, h) = (bound(lo, a.len(), 0)?, bound(hi, a.len(), a.len())?);
                Ok(Value::Array(Arc::new(if l < h {
                    a[l..h].to_vec()
                } else {
                    Vec::new()
                })))
            }
            Value::Str(s) => {
                let n = s.chars().count();
                let (l, h) = (bound(lo, n, 0)?, bound(hi, n, n)?);
                let text: String = if l < h {
                    s.chars().skip(l).take(h - l).collect()
                } else {
                    String::new()
                };
                Ok(Value::Str(Arc::from(text)))
            }
            other => Err(OpError::Type(format!(
                "cannot slice a {}",
                other.type_name()
            ))),
        }
    }

    /// Converts a JSON value: integral numbers become int, other numbers float.
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::str(s),
            serde_json::Value::Array(a) => {
                Value::Array(Arc::new(a.iter().map(Value::from_json).collect()))
            }
            serde_json::Value::Object(m) => Value::Map(Arc::new(
                m.iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), Value::from_json(v)))
                    .collect(),
            )),
        }
    }

    /// Converts to JSON: timestamps become RFC 3339 strings, durations ns integers,
    /// non-finite floats `null`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
            Value::Map(m) => serde_json::Value::Object(
                m.iter()
                    .map(|(k, v)| (k.to_string(), v.to_json()))
                    .collect(),
            ),
            Value::Timestamp(t) => serde_json::Value::String(format_rfc3339(*t)),
            Value::Duration(d) => serde_json::Value::from(*d),
        }
    }
}

/// Normalizes a possibly negative index against `len`.
fn norm_index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

fn type_err(op: ArithOp, a: &Value, b: &Value) -> OpError {
    OpError::Type(format!(
        "operator `{}` cannot combine {} and {}",
        op.symbol(),
        a.type_name(),
        b.type_name()
    ))
}

fn int_arith(op: ArithOp, a: i64, b: i64) -> Result<Value, OpError> {
    let sym = op.symbol();
    let r = match op {
        ArithOp::Add => a.checked_add(b),
        ArithOp::Sub => a.checked_sub(b),
        ArithOp::Mul => a.checked_mul(b),
        ArithOp::Div => {
            if b == 0 {
                return Err(OpError::DivisionByZero);
            }
            a.checked_div(b)
        }
        ArithOp::Rem => {
            if b == 0 {
                return Err(OpError::DivisionByZero);
            }
            a.checked_rem(b)
        }
        ArithOp::Pow => {
            if b < 0 {
                return Ok(Value::Float((a as f64).powf(b as f64)));
            }
            u32::try_from(b).ok().and_then(|e| a.checked_pow(e))
        }
        ArithOp::BitAnd => Some(a & b),
        ArithOp::BitOr => Some(a | b),
        ArithOp::BitXor => Some(a ^ b),
        ArithOp::Shl | ArithOp::Shr => {
            if !(0..64).contains(&b) {
                return Err(OpError::Type(format!("shift amount {b} is outside 0..64")));
            }
            if op == ArithOp::Shl {
                let r = a << b;
                if r >> b != a {
                    None
                } else {
                    Some(r)
                }
            } else {
                Some(a >> b)
            }
        }
    };
    r.map(Value::Int).ok_or(OpError::Overflow(sym))
}

fn float_arith(op: ArithOp, a: f64, b: f64, va: &Value, vb: &Value) -> Result<Value, OpError> {
    Ok(Value::Float(match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div => {
            if b == 0.0 {
                return Err(OpError::DivisionByZero);
            }
            a / b
        }
        ArithOp::Rem => {
            if b == 0.0 {
                return Err(OpError::DivisionByZero);
            }
            a % b
        }
        ArithOp::Pow => a.powf(b),
        _ => return Err(type_err(op, va, vb)),
    }))
}

/// Formats a float the VPL way: always with a fraction or exponent (`2.0`, `0.1`, `1e300`).
pub fn format_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

impl fmt::Display for Value {
    /// Text form used by `to_string` and string conversion: strings unquoted, composites as JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => f.write_str(&format_float(*x)),
            Value::Str(s) => f.write_str(s),
            Value::Timestamp(t) => f.write_str(&format_rfc3339(*t)),
            Value::Duration(d) => write!(f, "{d}ns"),
            Value::Array(_) | Value::Map(_) => write!(f, "{}", self.to_json()),
        }
    }
}

/// Formats ns since the epoch as RFC 3339 UTC (`1970-01-01T00:00:06Z`, fraction only when non-zero).
pub fn format_rfc3339(ns: i64) -> String {
    let mut buf = [0u8; RFC3339_MAX];
    let n = write_rfc3339(ns, &mut buf);
    String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned()
}

/// The longest text [`write_rfc3339`] writes (`yyyy-mm-ddThh:mm:ss.fffffffffZ`).
pub(crate) const RFC3339_MAX: usize = 30;

/// Writes the text of [`format_rfc3339`] into `buf` without allocating; returns its length.
pub(crate) fn write_rfc3339(ns: i64, buf: &mut [u8; RFC3339_MAX]) -> usize {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // An i64 of ns spans the years 1677..=2262: always four digits.
    let mut n = put_digits(buf, 0, y.clamp(0, 9999) as u64, 4);
    buf[n] = b'-';
    n = put_digits(buf, n + 1, u64::from(m), 2);
    buf[n] = b'-';
    n = put_digits(buf, n + 1, u64::from(d), 2);
    buf[n] = b'T';
    n = put_digits(buf, n + 1, (sod / 3600) as u64, 2);
    buf[n] = b':';
    n = put_digits(buf, n + 1, ((sod / 60) % 60) as u64, 2);
    buf[n] = b':';
    n = put_digits(buf, n + 1, (sod % 60) as u64, 2);
    if frac != 0 {
        buf[n] = b'.';
        n = if frac % 1_000_000 == 0 {
            put_digits(buf, n + 1, (frac / 1_000_000) as u64, 3)
        } else if frac % 1_000 == 0 {
            put_digits(buf, n + 1, (frac / 1_000) as u64, 6)
        } else {
            put_digits(buf, n + 1, frac as u64, 9)
        };
    }
    buf[n] = b'Z';
    n + 1
}

/// Writes `v` as exactly `width` decimal digits (zero-padded; `v` < 10^width) at `at`.
fn put_digits(buf: &mut [u8; RFC3339_MAX], at: usize, mut v: u64, width: usize) -> usize {
    for i in (0..width).rev() {
        buf[at + i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    at + width
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn int_division_truncates_and_remainder_follows_dividend() {
        assert!(matches!(
            Value::Int(-7).arith(ArithOp::Div, &Value::Int(2)),
            Ok(Value::Int(-3))
        ));
        assert!(matches!(
            Value::Int(-7).arith(ArithOp::Rem, &Value::Int(2)),
            Ok(Value::Int(-1))
        ));
        assert!(matches!(
            Value::Int(7).arith(ArithOp::Rem, &Value::Int(-2)),
            Ok(Value::Int(1))
        ));
    }

    #[test]
    fn overflow_and_division_by_zero_are_reported() {
        assert_eq!(
            Value::Int(i64::MAX)
                .arith(ArithOp::Add, &Value::Int(1))
                .err(),
            Some(OpError::Overflow("+"))
        );
        assert_eq!(
            Value::Int(i64::MIN)
                .arith(ArithOp::Div, &Value::Int(-1))
                .err(),
            Some(OpError::Overflow("/"))
        );
        assert_eq!(
            Value::Int(1).arith(ArithOp::Div, &Value::Int(0)).err(),
            Some(OpError::DivisionByZero)
        );
        assert_eq!(
            Value::Int(2).arith(ArithOp::Pow, &Value::Int(64)).err(),
            Some(OpError::Overflow("**"))
        );
    }

    #[test]
    fn numeric_comparison_crosses_int_and_float() {
        assert!(Value::Int(7).vpl_eq(&Value::Float(7.0)));
        assert_eq!(
            Value::Int(1).vpl_cmp(&Value::Float(1.5)),
            Some(Ordering::Less)
        );
        assert_eq!(Value::str("a").vpl_cmp(&Value::Int(1)), None);
        assert!(!Value::Null.vpl_eq(&Value::Int(0)));
        assert!(Value::Null.vpl_eq(&Value::Null));
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(format_rfc3339(6_000_000_000), "1970-01-01T00:00:06Z");
        assert_eq!(
            format_rfc3339(1_709_296_200_500_000_000),
            "2024-03-01T12:30:00.500Z"
        );
        assert_eq!(format_rfc3339(-1_000_000_000), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(format_rfc3339(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(format_rfc3339(1_500), "1970-01-01T00:00:00.000001500Z");
        assert_eq!(format_rfc3339(7_000), "1970-01-01T00:00:00.000007Z");
    }

    /// The `format!` version the allocation-free writer replaced.
    fn rfc3339_reference(ns: i64) -> String {
        let secs = ns.div_euclid(1_000_000_000);
        let frac = ns.rem_euclid(1_000_000_000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let mut s = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        );
        if frac != 0 {
            if frac % 1_000_000 == 0 {
                s.push_str(&format!(".{:03}", frac / 1_000_000));
            } else if frac % 1_000 == 0 {
                s.push_str(&format!(".{:06}", frac / 1_000));
            } else {
                s.push_str(&format!(".{frac:09}"));
            }
        }
        s.push('Z');
        s
    }

    proptest::proptest! {
        #[test]
        fn rfc3339_writer_matches_the_reference(ns in proptest::prelude::any::<i64>(), ms in -1_000_000_000_000i64..5_000_000_000_000) {
            proptest::prop_assert_eq!(format_rfc3339(ns), rfc3339_reference(ns));
            let ns = ms * 1_000_000;
            proptest::prop_assert_eq!(format_rfc3339(ns), rfc3339_reference(ns));
        }
    }

    #[test]
    fn float_formatting_keeps_a_fraction() {
        assert_eq!(format_float(2.0), "2.0");
        assert_eq!(format_float(0.25), "0.25");
    }
}
