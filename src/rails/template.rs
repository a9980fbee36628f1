//! Prompt templates (Jinja2, rendered with minijinja) under a budget: every
//! render gets a fixed amount of fuel (minijinja's instruction count) and
//! an output size limit, so a `prompts.yml` with a runaway loop fails that
//! render with an error naming the prompt instead of pinning a core and
//! growing memory. Every prompt is also rendered once when its config is
//! built, with sample values, so such a template (and an unknown filter)
//! is refused at load time, and a variable streamguard does not provide is
//! reported as a warning.

use std::io;

use minijinja::{Environment, UndefinedBehavior, Value};

/// What one render of a prompt template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateBudget {
    /// minijinja fuel: roughly, template instructions executed.
    pub fuel: u64,
    /// Bytes the rendered prompt may have.
    pub max_output_bytes: usize,
}

impl Default for TemplateBudget {
    fn default() -> Self {
        TemplateBudget {
            fuel: 200_000,
            max_output_bytes: 1 << 20,
        }
    }
}

/// An environment whose renders are bounded by `budget`'s fuel.
pub fn environment(budget: TemplateBudget) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(budget.fuel));
    // NeMo's prompts are Jinja2 and call Python's methods (`.items()`, `.upper()`).
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env
}

/// A writer that refuses to grow past its limit.
struct Bounded {
    out: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            self.overflowed = true;
            return Err(io::Error::other("output limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Renders template `name` of `env` with `ctx` within `budget`; the error
/// says which limit (fuel, output size) or what else failed.
pub fn render(
    env: &Environment<'static>,
    name: &str,
    ctx: Value,
    budget: TemplateBudget,
) -> Result<String, String> {
    let template = env.get_template(name).map_err(|e| e.to_string())?;
    let mut out = Bounded {
        out: Vec::new(),
        limit: budget.max_output_bytes,
        overflowed: false,
    };
    match template.render_captured_to(ctx, &mut out) {
        Ok(_) => String::from_utf8(out.out).map_err(|e| e.to_string()),
        Err(_) if out.overflowed => Err(format!(
            "the rendered prompt exceeds {} bytes (the template budget's output limit)",
            budget.max_output_bytes
        )),
        Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(format!(
            "the template ran out of fuel ({} steps, the template budget); does it loop without bound?",
            budget.fuel
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks a template at load time: a render with `sample` must succeed
/// within the budget (`Err` is a config error); a variable the render uses
/// that `sample` lacks is returned as a warning (it renders empty).
pub fn check(
    env: &Environment<'static>,
    name: &str,
    sample: Value,
    budget: TemplateBudget,
) -> Result<Option<String>, String> {
    render(env, name, sample.clone(), budget)?;
    let mut strict = env.clone();
    strict.set_undefined_behavior(UndefinedBehavior::Strict);
    Ok(render(&strict, name, sample, budget).err())
}

/// What prompt templates see as `config`: `config.custom_data`, the config's
/// free-form data (as NeMo's Colang sees `$config.custom_data`).
pub fn config_vars(config: &crate::config::Config) -> minijinja::Value {
    minijinja::context! {
        custom_data => yaml_value(config.custom_data()),
    }
}

/// A YAML value as a template value (config files nest at most
/// [`crate::config::yaml::MAX_DEPTH`] levels, so the recursion is bounded).
fn yaml_value(v: &serde_yaml::Value) -> minijinja::Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => minijinja::Value::from(()),
        Y::Bool(b) => minijinja::Value::from(*b),
        Y::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => minijinja::Value::from(i),
            (None, Some(f)) => minijinja::Value::from(f),
            (None, None) => minijinja::Value::from(n.to_string()),
        },
        Y::String(s) => minijinja::Value::from(s.as_str()),
        Y::Sequence(items) => {
            minijinja::Value::from(items.iter().map(yaml_value).collect::<Vec<_>>())
        }
        Y::Mapping(map) => minijinja::Value::from(
            map.iter()
                .map(|(k, v)| {
                    let key = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
                    (key, yaml_value(v))
                })
                .collect::<std::collections::BTreeMap<String, minijinja::Value>>(),
        ),
        Y::Tagged(t) => yaml_value(&t.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(template: &str, budget: TemplateBudget) -> Environment<'static> {
        let mut env = environment(budget);
        env.add_template_owned("t", template.to_string()).unwrap();
        env
    }

    #[test]
    fn runaway_templates_stop_at_the_budget() {
        let budget = TemplateBudget::default();
        let env = env_with(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            budget,
        );
        let e = render(&env, "t", minijinja::context! {}, budget).unwrap_err();
        assert!(e.contains("fuel"), "{e}");
        let small = TemplateBudget {
            fuel: 10_000_000,
            max_output_bytes: 1000,
        };
        let env = env_with("{% for i in range(5000) %}xx{% endfor %}", small);
        let e = render(&env, "t", minijinja::context! {}, small).unwrap_err();
        assert!(e.contains("1000 bytes"), "{e}");
    }

    #[test]
    fn python_methods_of_nemos_jinja2_prompts_render() {
        let budget = TemplateBudget::default();
        let env = env_with(
            "{% for k, v in {'S1': 'a'}.items() %}{{ k }}={{ v.upper() }}{% endfor %}",
            budget,
        );
        let out = render(&env, "t", minijinja::context! {}, budget).unwrap();
        assert_eq!(out, "S1=A");
    }

    #[test]
    fn the_load_time_check_warns_about_unknown_variables() {
        let budget = TemplateBudget::default();
        let env = env_with("User: {{ user_input }} {{ relevant_chunks }}", budget);
        let sample = minijinja::context! { user_input => "hi" };
        let warning = check(&env, "t", sample.clone(), budget).unwrap();
        assert!(warning.unwrap().contains("relevant_chunks"));
        let env = env_with("{{ user_input | no_such_filter }}", budget);
        assert!(check(&env, "t", sample, budget).is_err());
    }
}
