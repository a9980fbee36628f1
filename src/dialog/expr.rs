//! Colang 1.0 expressions, the subset NeMo evaluates with `simpleeval`:
//! `$variables`, string, number, `True`/`False`/`None` and list literals,
//! `.attribute` and `[index]`, `len(…)`, `not` / `and` / `or`, comparisons
//! (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`, `is`, `is not`) and
//! `+ - * / %`. Values are JSON values; truthiness and `in` are Python's. A
//! missing variable or attribute is `None`, as in NeMo. Parsing and
//! evaluation are bounded (length, nesting, result size).

use serde_json::{Number, Value};

/// The longest expression text.
pub const MAX_LEN: usize = 4096;
/// The deepest nesting.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Lit(Value),
    Var(String),
    List(Vec<Expr>),
    /// `{"a": 1}` (Colang 2).
    Dict(Vec<(Expr, Expr)>),
    /// `{"a", "b"}` (Colang 2): a JSON object `{"__set": [...]}`.
    Set(Vec<Expr>),
    Attr(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Len(Box<Expr>),
    /// A function of Colang 2's expressions (`regex(…)`, `search(…)`, …).
    Call(super::funcs::Func, Vec<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Is,
    IsNot,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Num(Number),
    Var(String),
    Name(String),
    Sym(&'static str),
}

const SYMBOLS: [&str; 21] = [
    "==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", "{", "}", ":", ",", ".", "+", "-", "*",
    "/", "%", "=",
];

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while let Some(c) = rest.chars().next() {
        if let Some(q) = ["\"\"\"", "\'\'\'"]
            .into_iter()
            .find(|q| rest.starts_with(q))
        {
            // A triple-quoted string (Colang 2), which may hold quotes.
            let body = &rest[3..];
            let end = body
                .find(q)
                .ok_or_else(|| format!("a `{q}` string without its closing `{q}`"))?;
            out.push(Tok::Str(body[..end].to_string()));
            rest = &body[end + 3..];
        } else if c == '"' || c == '\'' {
            let (s, after) = string(rest, c)?;
            out.push(Tok::Str(s));
            rest = after;
        } else if c.is_ascii_digit() {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
                .unwrap_or(rest.len());
            let t = rest[..end].replace('_', "");
            let n = match t.parse::<i64>() {
                Ok(i) => Number::from(i),
                Err(_) => t
                    .parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .ok_or_else(|| format!("`{t}` is not a number"))?,
            };
            out.push(Tok::Num(n));
            rest = &rest[end..];
        } else if c == '$' || c.is_alphabetic() || c == '_' {
            let body = if c == '$' { &rest[1..] } else { rest };
            let end = body
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(body.len());
            if end == 0 {
                return Err("`$` without a variable name".into());
            }
            let word = body[..end].to_string();
            out.push(if c == '$' {
                Tok::Var(word)
            } else {
                Tok::Name(word)
            });
            rest = &body[end..];
        } else {
            let sym = SYMBOLS
                .iter()
                .find(|s| rest.starts_with(**s))
                .ok_or_else(|| format!("unexpected `{c}`"))?;
            if *sym == "=" {
                return Err("`=` is an assignment, not a comparison (use `==`)".into());
            }
            out.push(Tok::Sym(sym));
            rest = &rest[sym.len()..];
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

/// A quoted string at the start of `text`, and what follows it.
fn string(text: &str, quote: char) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, e)) => out.push(e),
                None => break,
            },
            c if c == quote => return Ok((out, &text[i + c.len_utf8()..])),
            c => out.push(c),
        }
    }
    Err("a string without its closing quote".into())
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
}

/// Parses an expression.
pub fn parse(text: &str) -> Result<Expr, String> {
    if text.len() > MAX_LEN {
        return Err(format!("the expression is longer than {MAX_LEN} bytes"));
    }
    let mut p = Parser {
        toks: lex(text)?,
        at: 0,
        depth: 0,
    };
    if p.toks.is_empty() {
        return Err("an empty expression".into());
    }
    let e = p.or()?;
    match p.toks.get(p.at) {
        None => Ok(e),
        Some(t) => Err(format!("unexpected {} after the expression", show(t))),
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Str(s) => format!("\"{s}\""),
        Tok::Num(n) => n.to_string(),
        Tok::Var(v) => format!("`${v}`"),
        Tok::Name(n) => format!("`{n}`"),
        Tok::Sym(s) => format!("`{s}`"),
    }
}

fn bin(op: Op, a: Expr, b: Expr) -> Expr {
    Expr::Bin(op, Box::new(a), Box::new(b))
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn name_is(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(n)) if n == word)
    }

    fn sym_is(&self, sym: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym)
    }

    fn expect(&mut self, sym: &str) -> Result<(), String> {
        if self.sym_is(sym) {
            self.at += 1;
            Ok(())
        } else {
            Err(match self.peek() {
                Some(t) => format!("expected `{sym}`, found {}", show(t)),
                None => format!("expected `{sym}` at the end"),
            })
        }
    }

    fn deeper(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("the expression nests deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, String> {
        self.deeper()?;
        let mut e = self.and()?;
        while self.name_is("or") {
            self.at += 1;
            e = bin(Op::Or, e, self.and()?);
        }
        self.depth -= 1;
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.not()?;
        while self.name_is("and") {
            self.at += 1;
            e = bin(Op::And, e, self.not()?);
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.name_is("not") {
            self.at += 1;
            self.deeper()?;
            let e = Expr::Not(Box::new(self.not()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.comparison()
    }

    fn comparison_op(&mut self) -> Option<Op> {
        let op = match self.peek()? {
            Tok::Sym("==") => Op::Eq,
            Tok::Sym("!=") => Op::Ne,
            Tok::Sym("<") => Op::Lt,
            Tok::Sym("<=") => Op::Le,
            Tok::Sym(">") => Op::Gt,
            Tok::Sym(">=") => Op::Ge,
            Tok::Name(n) if n == "in" => Op::In,
            Tok::Name(n) if n == "is" => {
                if matches!(self.toks.get(self.at + 1), Some(Tok::Name(m)) if m == "not") {
                    self.at += 1;
                    Op::IsNot
                } else {
                    Op::Is
                }
            }
            Tok::Name(n)
                if n == "not"
                    && matches!(self.toks.get(self.at + 1), Some(Tok::Name(m)) if m == "in") =>
            {
                self.at += 1;
                Op::NotIn
            }
            _ => return None,
        };
        self.at += 1;
        Some(op)
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        let left = self.sum()?;
        let Some(op) = self.comparison_op() else {
            return Ok(left);
        };
        let e = bin(op, left, self.sum()?);
        if self.comparison_op().is_some() {
            return Err("chained comparisons are not supported; use `and`".into());
        }
        Ok(e)
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut e = self.product()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Sym("+")) => Op::Add,
                Some(Tok::Sym("-")) => Op::Sub,
                _ => return Ok(e),
            };
            self.at += 1;
            e = bin(op, e, self.product()?);
        }
    }

    fn product(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Sym("*")) => Op::Mul,
                Some(Tok::Sym("/")) => Op::Div,
                Some(Tok::Sym("%")) => Op::Mod,
                _ => return Ok(e),
            };
            self.at += 1;
            e = bin(op, e, self.unary()?);
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.sym_is("-") {
            self.at += 1;
            self.deeper()?;
            let e = Expr::Neg(Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        loop {
            if self.sym_is(".") {
                self.at += 1;
                match self.peek().cloned() {
                    Some(Tok::Name(n)) => {
                        self.at += 1;
                        if self.sym_is("(") {
                            return Err(format!("method calls (`.{n}(…)`) are not supported"));
                        }
                        e = Expr::Attr(Box::new(e), n);
                    }
                    _ => return Err("`.` without an attribute name".into()),
                }
            } else if self.sym_is("[") {
                self.at += 1;
                let index = self.or()?;
                self.expect("]")?;
                e = Expr::Index(Box::new(e), Box::new(index));
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let Some(t) = self.peek().cloned() else {
            return Err("the expression ends too early".into());
        };
        self.at += 1;
        Ok(match t {
            Tok::Str(s) => Expr::Lit(Value::String(s)),
            Tok::Num(n) => Expr::Lit(Value::Number(n)),
            Tok::Var(v) => Expr::Var(v),
            Tok::Name(n) => match n.as_str() {
                "True" => Expr::Lit(Value::Bool(true)),
                "False" => Expr::Lit(Value::Bool(false)),
                "None" => Expr::Lit(Value::Null),
                "len" => {
                    self.expect("(")?;
                    let e = self.or()?;
                    self.expect(")")?;
                    Expr::Len(Box::new(e))
                }
                other if super::funcs::Func::named(other).is_some() && self.sym_is("(") => {
                    let f = super::funcs::Func::named(other)
                        .ok_or_else(|| format!("unknown function `{other}`"))?;
                    self.at += 1;
                    let mut args = Vec::new();
                    while !self.sym_is(")") {
                        args.push(self.or()?);
                        if !self.sym_is(")") {
                            self.expect(",")?;
                        }
                    }
                    self.at += 1;
                    Expr::Call(f, args)
                }
                other => return Err(format!("unknown name `{other}` (variables start with `$`)")),
            },
            Tok::Sym("(") => {
                let e = self.or()?;
                self.expect(")")?;
                e
            }
            Tok::Sym("[") => {
                let mut items = Vec::new();
                while !self.sym_is("]") {
                    items.push(self.or()?);
                    if !self.sym_is("]") {
                        self.expect(",")?;
                    }
                }
                self.at += 1;
                Expr::List(items)
            }
            Tok::Sym("{") => self.braces()?,
            Tok::Sym(s) => return Err(format!("unexpected `{s}`")),
        })
    }

    /// After `{`: a dictionary (`{"a": 1}`) or a set (`{"a", "b"}`).
    fn braces(&mut self) -> Result<Expr, String> {
        let mut pairs = Vec::new();
        let mut items = Vec::new();
        while !self.sym_is("}") {
            let key = self.or()?;
            if self.sym_is(":") && items.is_empty() {
                self.at += 1;
                pairs.push((key, self.or()?));
            } else if pairs.is_empty() {
                items.push(key);
            } else {
                return Err("a dictionary item without `key: value`".into());
            }
            if !self.sym_is("}") {
                self.expect(",")?;
            }
        }
        self.at += 1;
        Ok(match items.is_empty() {
            true => Expr::Dict(pairs),
            false => Expr::Set(items),
        })
    }
}

pub use super::value::{display, truthy};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(text: &str) -> Result<Value, String> {
        let vars = json!({"user_message": "a dummy text", "n": 3, "config": {"enable_rails_exceptions": false},
                          "result": {"is_blocked": true, "items": [1, 2]}});
        parse(text)?.eval(&|name| vars.get(name).cloned())
    }

    #[test]
    fn nemos_conditions_evaluate_as_python_would() {
        assert_eq!(eval("\"dummy\" in $user_message"), Ok(json!(true)));
        assert_eq!(eval("'zz' not in $user_message"), Ok(json!(true)));
        assert_eq!(eval("$config.enable_rails_exceptions"), Ok(json!(false)));
        assert_eq!(eval("not $result.is_blocked"), Ok(json!(false)));
        assert_eq!(eval("$n > 2 and len($result.items) == 2"), Ok(json!(true)));
        assert_eq!(eval("$missing is None"), Ok(json!(true)));
        assert_eq!(eval("$missing or 'fallback'"), Ok(json!("fallback")));
        assert_eq!(
            eval("\"Guardrails AI \" + 'x' + \" failed\""),
            Ok(json!("Guardrails AI x failed"))
        );
        assert_eq!(eval("$n * 2 - 1"), Ok(json!(5)));
        assert_eq!(eval("$n / 2"), Ok(json!(1.5)));
        assert_eq!(eval("$result.items[-1]"), Ok(json!(2)));
        assert_eq!(eval("[1, 2] == $result.items"), Ok(json!(true)));
        assert_eq!(eval("1 == 1.0"), Ok(json!(true)));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        assert!(eval("$n = 3").unwrap_err().contains("assignment"));
        assert!(eval("foo").unwrap_err().contains("unknown name `foo`"));
        assert!(eval("1 < $n < 5").unwrap_err().contains("chained"));
        assert!(eval("\"open").unwrap_err().contains("closing quote"));
        assert!(
            eval("$user_message.lower()")
                .unwrap_err()
                .contains("method calls")
        );
        assert!(eval("$n + 'a'").is_err());
        assert!(
            eval("$missing.x")
                .unwrap_err()
                .contains("`None` has no attribute")
        );
        let deep = format!("{}1{}", "(".repeat(40), ")".repeat(40));
        assert!(eval(&deep).unwrap_err().contains("deeper"));
        assert!(parse(&"1+".repeat(3000)).unwrap_err().contains("longer"));
    }

    proptest::proptest! {
        /// Whatever the text, parsing and evaluating return a value or an error.
        #[test]
        fn expressions_never_panic(text in "[$a-z0-9\"'()\\[\\].,=!<>+*/% -]{0,40}|(not |and |or |in |len|True|None|\\$x|\\[|\\]|\\(|\\)|\"s\"|1|-|\\.y|==|\\+| ){0,30}") {
            if let Ok(e) = parse(&text) {
                let _ = e.eval(&|_| Some(json!({"y": [1, "a", {"z": null}]})));
            }
        }
    }
}
