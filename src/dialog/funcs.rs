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
/// Where a set literal keeps its items.
pub const SET_KEY: &str = "__set";

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
    /// `pretty_str(x)`: the value as indented JSON.
    PrettyStr,
    /// `flows_info(uid)`: what the runtime knows of a flow instance (read
    /// through the variables as [`FLOWS_INFO`] + the uid).
    FlowsInfo,
}

/// The variable name `flows_info(uid)` reads, before the uid.
pub const FLOWS_INFO: &str = "\u{1}flows_info ";

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
            "pretty_str" => Func::PrettyStr,
            "flows_info" => Func::FlowsInfo,
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
            Func::PrettyStr => Value::String(serde_json::to_string_pretty(a).unwrap_or_default()),
            // Evaluated with the variables (see `Expr::eval`).
            Func::FlowsInfo => Value::Null,
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

/// The most patterns kept compiled per thread (a flow matches the same
/// few against every event).
const CACHED: usize = 128;

fn compile(p: &str) -> Result<regex::Regex, String> {
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<String, regex::Regex>> =
            std::cell::RefCell::default();
    }
    if let Some(r) = CACHE.with(|c| c.borrow().get(p).cloned()) {
        return Ok(r);
    }
    let r = RegexBuilder::new(p)
        .size_limit(MAX_REGEX)
        .build()
        .map_err(|e| format!("the pattern `{p}` does not compile: {e}"))?;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHED {
            c.clear();
        }
        c.insert(p.to_string(), r.clone());
    });
    Ok(r)
}

/// Whether an event's argument `got` matches the pattern's `want`, as
/// NeMo's Colang 2 compares them: a `regex(…)` is searched in the text; a
/// dictionary's items are all in `got`'s; a set's items are each somewhere
/// in `got`; a list is a prefix of `got`, item by item; numbers by value.
pub fn matches(got: &Value, want: &Value) -> bool {
    match want {
        Value::Object(o) if o.contains_key(REGEX_KEY) => {
            let p = o.get(REGEX_KEY).and_then(Value::as_str).unwrap_or_default();
            compile(p).is_ok_and(|r| r.is_match(&display(got)))
        }
        Value::Object(o) if o.contains_key(SET_KEY) => {
            let wanted = o.get(SET_KEY).and_then(Value::as_array);
            let got = match got {
                Value::Object(g) => g.get(SET_KEY).and_then(Value::as_array),
                Value::Array(g) => Some(g),
                _ => None,
            };
            match (wanted, got) {
                (Some(w), Some(g)) => w.iter().all(|w| g.iter().any(|g| matches(g, w))),
                _ => false,
            }
        }
        Value::Object(o) => got.as_object().is_some_and(|g| {
            o.iter()
                .all(|(k, w)| g.get(k).is_some_and(|g| matches(g, w)))
        }),
        Value::Array(w) => got
            .as_array()
            .is_some_and(|g| g.len() >= w.len() && w.iter().zip(g).all(|(w, g)| matches(g, w))),
        _ => match (got.as_f64(), want.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => got == want,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(items: Value) -> Value {
        json!({ SET_KEY: items })
    }

    #[test]
    fn arguments_match_as_nemo_compares_them() {
        assert!(matches(&json!({"a": 1, "b": 2}), &json!({"a": 1.0})));
        assert!(!matches(&json!({"b": 1}), &json!({"a": 1})));
        assert!(matches(
            &set(json!(["b", "a", "c"])),
            &set(json!(["a", "b"]))
        ));
        assert!(!matches(&set(json!(["a"])), &set(json!(["a", "b"]))));
        assert!(matches(&json!(["a", "b", "c"]), &json!(["a", "b"])));
        assert!(!matches(&json!(["b", "a"]), &json!(["a", "b"])));
        let re = Func::Regex.call(vec![json!("(?i)test.*")]).unwrap();
        assert!(matches(&json!("a Test here"), &re));
        assert!(!matches(&json!("nothing"), &re));
        assert!(
            Func::Regex
                .call(vec![json!("(")])
                .unwrap_err()
                .contains("does not compile")
        );
        assert_eq!(
            Func::Search
                .call(vec![json!("^user "), json!("user said")])
                .unwrap(),
            json!(true)
        );
        assert_eq!(Func::Int.call(vec![json!(" 42 ")]).unwrap(), json!(42));
        assert!(Func::Int.call(vec![json!("4x")]).is_err());
        assert!(Func::Str.call(vec![]).is_err());
    }
}
