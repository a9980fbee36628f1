//! The functions of Colang 2's expressions that streamguard evaluates, as
//! NeMo's `eval.py` defines them: `regex(p)` (a pattern an event argument
//! is matched against), `search(p, text)`, `str` / `int` / `float`, and
//! the `is_…` type tests. Patterns are Rust's `regex` syntax (no
//! look-around), compiled with a size bound.

use regex::RegexBuilder;
use serde_json::{Map, Value};

use super::value::display;

/// The largest compiled pattern.
const MAX_REGEX: usize = 1 << 20;
/// Where a `regex(…)` value keeps its pattern.
pub const REGEX_KEY: &str = "__regex";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Regex,
    Search,
    Str,
    Int,
    Float,
    IsStr,
    IsInt,
    IsFloat,
    IsBool,
    IsRegex,
}

impl Func {
    pub fn named(name: &str) -> Option<Func> {
        Some(match name {
            "regex" => Func::Regex,
            "search" => Func::Search,
            "str" => Func::Str,
            "int" => Func::Int,
            "float" => Func::Float,
            "is_str" => Func::IsStr,
            "is_int" => Func::IsInt,
            "is_float" => Func::IsFloat,
            "is_bool" => Func::IsBool,
            "is_regex" => Func::IsRegex,
            _ => return None,
        })
    }

    pub fn call(self, args: Vec<Value>) -> Result<Value, String> {
        let want = if self == Func::Search { 2 } else { 1 };
        if args.len() != want {
            return Err(format!("`{self:?}` takes {want} argument(s)").to_lowercase());
        }
        let a = &args[0];
        Ok(match self {
            Func::Regex => {
                let p = a.as_str().ok_or("`regex` takes a string")?;
                compile(p)?;
                let mut m = Map::new();
                m.insert(REGEX_KEY.into(), Value::String(p.to_string()));
                Value::Object(m)
            }
            Func::Search => {
                let p = pattern(a).ok_or("`search` takes a pattern first")?;
                Value::Bool(compile(p)?.is_match(&display(&args[1])))
            }
            Func::Str => Value::String(display(a)),
            Func::Int => match a {
                Value::Number(n) => Value::from(n.as_f64().unwrap_or(0.0).trunc() as i64),
                Value::Bool(b) => Value::from(i64::from(*b)),
                Value::String(s) => Value::from(
                    s.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("int(): `{s}` is not a whole number"))?,
                ),
                other => return Err(format!("int() of {}", display(other))),
            },
            Func::Float => match a {
                Value::Number(n) => Value::from(n.as_f64().unwrap_or(0.0)),
                Value::Bool(b) => Value::from(f64::from(u8::from(*b))),
                Value::String(s) => Value::from(
                    s.trim()
                        .parse::<f64>()
                        .map_err(|_| format!("float(): `{s}` is not a number"))?,
                ),
                other => return Err(format!("float() of {}", display(other))),
            },
            Func::IsStr => Value::Bool(a.is_string()),
            Func::IsInt => Value::Bool(a.is_i64() || a.is_u64()),
            Func::IsFloat => Value::Bool(a.is_f64()),
            Func::IsBool => Value::Bool(a.is_boolean()),
            Func::IsRegex => Value::Bool(pattern(a).is_some() && a.is_object()),
        })
    }
}

/// The pattern of a `regex(…)` value, or a plain string.
pub fn pattern(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get(REGEX_KEY).and_then(Value::as_str),
        _ => None,
    }
}

fn compile(p: &str) -> Result<regex::Regex, String> {
    RegexBuilder::new(p)
        .size_limit(MAX_REGEX)
        .build()
        .map_err(|e| format!("the pattern `{p}` does not compile: {e}"))
}

/// Whether `got` matches `want`: a `regex(…)` value searches the text.
pub fn matches(got: &Value, want: &Value) -> Option<bool> {
    let o = want.as_object()?;
    let p = o.get(REGEX_KEY)?.as_str()?;
    Some(compile(p).is_ok_and(|r| r.is_match(&display(got))))
}
