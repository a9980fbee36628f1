//! What Colang 1.0 expressions do with values: Python's truthiness,
//! equality, ordering, `in`, arithmetic and indexing over JSON values, and
//! [`Expr::eval`].

use serde_json::{Number, Value};

use super::expr::{Expr, Op};

/// The largest string or list an expression may build.
pub const MAX_VALUE: usize = 1 << 20;

/// Python's truthiness.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// How a value reads in a message (`bot $answer`, `"… {$name} …"`): strings
/// as they are, `None` as "None", the rest as Python prints them.
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn equal(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) if !a.is_boolean() && !b.is_boolean() => x == y,
        _ => a == b,
    }
}

fn number(f: f64) -> Result<Value, String> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| "the result is not a number".into())
}

fn bounded(v: Value) -> Result<Value, String> {
    let size = match &v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if size > MAX_VALUE {
        return Err(format!("a value grew past {MAX_VALUE}"));
    }
    Ok(v)
}

fn arith(op: Op, a: Value, b: Value) -> Result<Value, String> {
    if let (Some(x), Some(y)) = (num(&a), num(&b)) {
        let both_int = a.is_i64() && b.is_i64();
        return match op {
            Op::Add => number(x + y),
            Op::Sub => number(x - y),
            Op::Mul => number(x * y),
            Op::Div if y == 0.0 => Err("division by zero".into()),
            Op::Div => Number::from_f64(x / y)
                .map(Value::Number)
                .ok_or_else(|| "the result is not a number".into()),
            Op::Mod if y == 0.0 => Err("modulo by zero".into()),
            Op::Mod if both_int => number(x.rem_euclid(y)),
            _ => number(x % y),
        };
    }
    match (op, a, b) {
        (Op::Add, Value::String(x), Value::String(y)) => bounded(Value::String(x + &y)),
        (Op::Add, Value::Array(mut x), Value::Array(y)) => {
            x.extend(y);
            bounded(Value::Array(x))
        }
        (op, a, b) => Err(format!(
            "`{op:?}` does not apply to {} and {}",
            kind(&a),
            kind(&b)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn order(op: Op, a: &Value, b: &Value) -> Result<bool, String> {
    let ord = match (a, b) {
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).ok_or("NaN does not compare")?,
            _ => return Err(format!("{} and {} do not compare", kind(a), kind(b))),
        },
    };
    Ok(match op {
        Op::Lt => ord.is_lt(),
        Op::Le => ord.is_le(),
        Op::Gt => ord.is_gt(),
        _ => ord.is_ge(),
    })
}

fn contains(needle: &Value, haystack: &Value) -> Result<bool, String> {
    match (needle, haystack) {
        (Value::String(n), Value::String(h)) => Ok(h.contains(n.as_str())),
        (n, Value::Array(items)) => Ok(items.iter().any(|i| equal(i, n))),
        (Value::String(n), Value::Object(o)) => Ok(o.contains_key(n)),
        (n, h) => Err(format!("`in` does not apply to {} in {}", kind(n), kind(h))),
    }
}

fn index(base: Value, at: Value) -> Result<Value, String> {
    match (base, &at) {
        (Value::Array(items), Value::Number(n)) => {
            let i = n.as_i64().ok_or("a list index must be a whole number")?;
            let len = items.len() as i64;
            let i = if i < 0 { i + len } else { i };
            usize::try_from(i)
                .ok()
                .and_then(|i| items.into_iter().nth(i))
                .ok_or_else(|| "the list index is out of range".into())
        }
        (Value::Object(mut o), Value::String(k)) => Ok(o.remove(k).unwrap_or(Value::Null)),
        (Value::String(s), Value::Number(n)) => {
            let i = n.as_i64().ok_or("a string index must be a whole number")?;
            let len = s.chars().count() as i64;
            let i = if i < 0 { i + len } else { i };
            usize::try_from(i)
                .ok()
                .and_then(|i| s.chars().nth(i))
                .map(|c| Value::String(c.to_string()))
                .ok_or_else(|| "the string index is out of range".into())
        }
        (b, a) => Err(format!("{} cannot be indexed by {}", kind(&b), kind(a))),
    }
}

impl Expr {
    /// Evaluates with `var` reading the context (`None`: not set).
    pub fn eval(&self, var: &dyn Fn(&str) -> Option<Value>) -> Result<Value, String> {
        Ok(match self {
            Expr::Lit(v) => v.clone(),
            Expr::Var(name) => var(name).unwrap_or(Value::Null),
            Expr::List(items) => Value::Array(
                items
                    .iter()
                    .map(|e| e.eval(var))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Dict(pairs) => {
                let mut o = serde_json::Map::new();
                for (k, v) in pairs {
                    o.insert(display(&k.eval(var)?), v.eval(var)?);
                }
                Value::Object(o)
            }
            Expr::Set(items) => {
                let mut seen: Vec<Value> = Vec::new();
                for e in items {
                    let v = e.eval(var)?;
                    if !seen.contains(&v) {
                        seen.push(v);
                    }
                }
                let mut o = serde_json::Map::new();
                o.insert(super::funcs::SET_KEY.into(), Value::Array(seen));
                Value::Object(o)
            }
            Expr::Attr(base, name) => match base.eval(var)? {
                Value::Object(mut o) => o.remove(name).unwrap_or(Value::Null),
                Value::Null => return Err(format!("`None` has no attribute `{name}`")),
                other => return Err(format!("{} has no attribute `{name}`", kind(&other))),
            },
            Expr::Index(base, at) => index(base.eval(var)?, at.eval(var)?)?,
            Expr::Len(e) => match e.eval(var)? {
                Value::String(s) => Value::from(s.chars().count()),
                Value::Array(a) => Value::from(a.len()),
                Value::Object(o) => Value::from(o.len()),
                other => return Err(format!("`len` does not apply to {}", kind(&other))),
            },
            Expr::Call(super::funcs::Func::FlowsInfo, args) => {
                let uid = match args.first() {
                    Some(e) => display(&e.eval(var)?),
                    None => return Err("`flows_info` takes a flow instance uid".into()),
                };
                var(&format!("{}{uid}", super::funcs::FLOWS_INFO)).unwrap_or(Value::Null)
            }
            Expr::Call(f, args) => {
                let args = args
                    .iter()
                    .map(|e| e.eval(var))
                    .collect::<Result<Vec<_>, _>>()?;
                f.call(args)?
            }
            Expr::Not(e) => Value::Bool(!truthy(&e.eval(var)?)),
            Expr::Neg(e) => arith(Op::Sub, Value::from(0), e.eval(var)?)?,
            Expr::Bin(Op::Or, a, b) => {
                let a = a.eval(var)?;
                if truthy(&a) { a } else { b.eval(var)? }
            }
            Expr::Bin(Op::And, a, b) => {
                let a = a.eval(var)?;
                if truthy(&a) { b.eval(var)? } else { a }
            }
            Expr::Bin(op, a, b) => {
                let (a, b) = (a.eval(var)?, b.eval(var)?);
                match op {
                    Op::Eq | Op::Is => Value::Bool(equal(&a, &b)),
                    Op::Ne | Op::IsNot => Value::Bool(!equal(&a, &b)),
                    Op::Lt | Op::Le | Op::Gt | Op::Ge => Value::Bool(order(*op, &a, &b)?),
                    Op::In => Value::Bool(contains(&a, &b)?),
                    Op::NotIn => Value::Bool(!contains(&a, &b)?),
                    _ => arith(*op, a, b)?,
                }
            }
        })
    }
}
