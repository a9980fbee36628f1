//! The one table of rail flows: what each needs, whether it rewrites, and
//! how it is built. Validation and construction both read it.

use std::sync::Arc;

use super::{
    Providers, Rail, RailSet, Rails, Stage, Warnings,
    injection::InjectionDetection,
    judge::{self, JudgeModel, JudgeSpec, Shape},
    regex_check::RegexCheck,
    sensitive_data::SensitiveData,
    template::TemplateBudget,
};
use crate::config::{Config, ConfigError, FlowRef, RailStage};

/// What building a rail can use.
pub struct BuildContext<'a> {
    pub config: &'a Config,
    pub providers: &'a Providers,
    pub warnings: &'a mut Warnings,
    /// What one render of a prompt template may use.
    pub templates: TemplateBudget,
    /// The server's actions server, for configs without their own.
    pub actions_server: Option<&'a reqwest::Url>,
}

/// Builds a rail of its own kind for a flow of a stage.
pub type BuildFn = fn(&mut BuildContext<'_>, &FlowRef, Stage) -> Result<Arc<dyn Rail>, ConfigError>;

/// How a flow becomes a rail.
#[derive(Clone, Copy)]
pub enum Build {
    /// The judge rail with this spec (one LLM call, its answer parsed).
    Judge(JudgeSpec),
    /// A rail of its own kind.
    Native(BuildFn),
}

impl std::fmt::Debug for Build {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Build::Judge(spec) => f.debug_tuple("Judge").field(spec).finish(),
            Build::Native(_) => f.write_str("Native"),
        }
    }
}

/// A flow name streamguard knows.
#[derive(Debug, Clone, Copy)]
pub struct FlowSpec {
    pub name: &'static str,
    pub stage: Stage,
    /// What the config must provide (shown in errors and the README).
    pub needs: &'static str,
    /// Whether the rail may rewrite the text instead of allowing or blocking.
    pub rewrites: bool,
    pub build: Build,
}

const fn judge(name: &'static str, stage: Stage, needs: &'static str, spec: JudgeSpec) -> FlowSpec {
    FlowSpec {
        name,
        stage,
        needs,
        rewrites: false,
        build: Build::Judge(spec),
    }
}

const SELF_CHECK: JudgeSpec = JudgeSpec {
    task: "self_check",
    model: JudgeModel::OwnTypeElseMain,
    shape: Shape::Prompt,
};
const CONTENT_SAFETY: JudgeSpec = JudgeSpec {
    task: "content_safety_check",
    model: JudgeModel::FlowArg,
    shape: Shape::Prompt,
};
const TOPIC_SAFETY: JudgeSpec = JudgeSpec {
    task: "topic_safety_check",
    model: JudgeModel::FlowArg,
    shape: Shape::TopicControl,
};
pub(super) const SELF_CHECK_FACTS: JudgeSpec = JudgeSpec {
    task: "self_check_facts",
    model: JudgeModel::OwnTypeElseMain,
    shape: Shape::Facts,
};
const SELF_CHECK_HALLUCINATION: JudgeSpec = JudgeSpec {
    task: "self_check_hallucination",
    model: JudgeModel::OwnTypeElseMain,
    shape: Shape::Hallucination,
};
const PATRONUS_LYNX: JudgeSpec = JudgeSpec {
    task: "patronus_lynx_check_output_hallucination",
    model: JudgeModel::Type("patronus_lynx"),
    shape: Shape::Lynx,
};
const LLAMA_GUARD: JudgeSpec = JudgeSpec {
    task: "llama_guard_check",
    model: JudgeModel::Type("llama_guard"),
    shape: Shape::Prompt,
};

const SENSITIVE_NEEDS_IN: &str = "`rails.config.sensitive_data_detection.input.entities`";
const SENSITIVE_NEEDS_OUT: &str = "`rails.config.sensitive_data_detection.output.entities`";
const SENSITIVE_NEEDS_RET: &str = "`rails.config.sensitive_data_detection.retrieval.entities`";
const REGEX_NEEDS_IN: &str =
    "`rails.config.regex_detection.input` (`patterns`, `keywords`, `case_insensitive`)";
const REGEX_NEEDS_OUT: &str =
    "`rails.config.regex_detection.output` (`patterns`, `keywords`, `case_insensitive`)";

fn detect(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    Ok(Arc::new(SensitiveData::new(
        ctx.config,
        flow,
        stage,
        false,
        ctx.warnings,
    )?))
}

fn mask(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    Ok(Arc::new(SensitiveData::new(
        ctx.config,
        flow,
        stage,
        true,
        ctx.warnings,
    )?))
}

fn regex(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    Ok(Arc::new(RegexCheck::new(ctx.config, flow, stage)?))
}

fn injection(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    _: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    Ok(Arc::new(InjectionDetection::new(ctx.config, flow)?))
}

pub(super) const fn native(
    name: &'static str,
    stage: Stage,
    needs: &'static str,
    rewrites: bool,
    build: BuildFn,
) -> FlowSpec {
    FlowSpec {
        name,
        stage,
        needs,
        rewrites,
        build: Build::Native(build),
    }
}

/// Every built-in flow.
pub const CATALOG: &[FlowSpec] = &[
    judge(
        "self check input",
        Stage::Input,
        "prompt `self_check_input`; judge model `type: self_check_input`, else the main model",
        SELF_CHECK,
    ),
    judge(
        "self check output",
        Stage::Output,
        "prompt `self_check_output`; judge model `type: self_check_output`, else the main model",
        SELF_CHECK,
    ),
    judge(
        "content safety check input",
        Stage::Input,
        "`$model=<type>`, a model of that type, prompt `content_safety_check_input $model=<type>`",
        CONTENT_SAFETY,
    ),
    judge(
        "content safety check output",
        Stage::Output,
        "`$model=<type>`, a model of that type, prompt `content_safety_check_output $model=<type>`",
        CONTENT_SAFETY,
    ),
    judge(
        "topic safety check input",
        Stage::Input,
        "`$model=<type>`, a model of that type, prompt `topic_safety_check_input $model=<type>`",
        TOPIC_SAFETY,
    ),
    judge(
        "self check facts",
        Stage::Output,
        "prompt `self_check_facts` (`evidence`, `response`); runs when a dialog flow sets `$check_facts` and the knowledge base found chunks",
        SELF_CHECK_FACTS,
    ),
    judge(
        "self check hallucination",
        Stage::Output,
        "prompt `self_check_hallucination` (`paragraph`, `statement`); runs when a dialog flow sets `$check_hallucination`; the main model answers twice more to compare",
        SELF_CHECK_HALLUCINATION,
    ),
    judge(
        "patronus lynx check output hallucination",
        Stage::Output,
        "a model `type: patronus_lynx`, prompt `patronus_lynx_check_output_hallucination` (`user_input`, `bot_response`, `provided_context`: the turn's knowledge-base chunks)",
        PATRONUS_LYNX,
    ),
    judge(
        "llama guard check input",
        Stage::Input,
        "a model `type: llama_guard`, prompt `llama_guard_check_input`",
        LLAMA_GUARD,
    ),
    judge(
        "llama guard check output",
        Stage::Output,
        "a model `type: llama_guard`, prompt `llama_guard_check_output`",
        LLAMA_GUARD,
    ),
    native(
        "detect sensitive data on input",
        Stage::Input,
        SENSITIVE_NEEDS_IN,
        false,
        detect,
    ),
    native(
        "detect sensitive data on output",
        Stage::Output,
        SENSITIVE_NEEDS_OUT,
        false,
        detect,
    ),
    native(
        "mask sensitive data on input",
        Stage::Input,
        SENSITIVE_NEEDS_IN,
        true,
        mask,
    ),
    native(
        "mask sensitive data on output",
        Stage::Output,
        SENSITIVE_NEEDS_OUT,
        true,
        mask,
    ),
    native(
        "detect sensitive data on retrieval",
        Stage::Retrieval,
        SENSITIVE_NEEDS_RET,
        false,
        detect,
    ),
    native(
        "mask sensitive data on retrieval",
        Stage::Retrieval,
        SENSITIVE_NEEDS_RET,
        true,
        mask,
    ),
    native(
        "injection detection",
        Stage::Output,
        "`rails.config.injection_detection.injections` (sqli, template, code, xss) and `action` (reject, omit)",
        true,
        injection,
    ),
    native(
        "regex check input",
        Stage::Input,
        REGEX_NEEDS_IN,
        false,
        regex,
    ),
    native(
        "regex check output",
        Stage::Output,
        REGEX_NEEDS_OUT,
        false,
        regex,
    ),
];

/// The `rails.config` sections the built-in rails read (the services' are
/// in [`super::services::SETTINGS`]).
const SETTINGS: &[&str] = &[
    "content_safety",
    "sensitive_data_detection",
    "injection_detection",
    "regex_detection",
];

/// Flow names of older NeMo releases, and what they are called now.
const RENAMED: &[(&str, &str)] = &[
    ("check facts", "self check facts"),
    ("check hallucination", "self check hallucination"),
    ("check jailbreak", "jailbreak detection heuristics"),
    ("check input", "self check input"),
    ("check output", "self check output"),
];

/// `flow` under its current name when it has an older NeMo release's (with
/// a warning to rename it): `check facts` is AlignScore's with
/// `rails.config.fact_checking.provider: align_score`, as it was then.
fn renamed(config: &Config, flow: &FlowRef, warnings: &mut Warnings) -> Option<FlowRef> {
    #[derive(Default, serde::Deserialize)]
    struct FactChecking {
        provider: Option<String>,
    }
    let (old, new) = RENAMED.iter().find(|(old, _)| *old == flow.name)?;
    let provider = config
        .rail_settings::<FactChecking>("fact_checking")
        .ok()
        .and_then(|f| f.provider);
    let new = match (*old, provider.as_deref()) {
        ("check facts", Some("align_score")) => "alignscore check facts",
        _ => new,
    };
    warnings.push(format!(
        "{}: `{}`: `{old}` is what older NeMo releases called `{new}`; it runs as `{new}` (rename it: current NeMo releases no longer know the old name)",
        config.relative(&flow.source).display(),
        flow.key
    ));
    Some(FlowRef {
        name: new.to_string(),
        ..flow.clone()
    })
}

/// Every flow streamguard knows: the built-in ones, then the services'.
pub fn flows() -> impl Iterator<Item = &'static FlowSpec> {
    CATALOG.iter().chain(super::services::FLOWS)
}

/// The known flows of a stage, for error messages.
/// What an unknown-flow error says before the list of known flows.
pub const KNOWN_FLOWS: &str = "; streamguard knows:";

pub fn known_flows(stage: Stage) -> String {
    flows()
        .filter(|s| s.stage == stage)
        .map(|s| format!("\n  - `{}` (needs {})", s.name, s.needs))
        .collect()
}

/// The catalog entry of a flow name.
pub fn flow_spec(name: &str) -> Option<&'static FlowSpec> {
    flows().find(|s| s.name == name)
}

/// The spec of a configured flow, checked against its stage and against what
/// rewriting rails need.
fn checked_spec(
    config: &Config,
    stage: Stage,
    rails: &RailStage,
    flow: &FlowRef,
) -> Result<&'static FlowSpec, ConfigError> {
    let spec = match flow_spec(&flow.name) {
        Some(s) if s.stage == stage => s,
        Some(s) => {
            return Err(ConfigError::invalid(
                &flow.source,
                &flow.key,
                format!(
                    "`{}` is a rail of `rails.{}.flows`, not of `rails.{stage}.flows`",
                    flow.name, s.stage
                ),
            ));
        }
        None => {
            return Err(ConfigError::invalid(
                &flow.source,
                &flow.key,
                format!(
                    "unknown {stage} rail flow `{}`{KNOWN_FLOWS}{}",
                    flow.name,
                    known_flows(stage)
                ),
            ));
        }
    };
    if spec.rewrites {
        check_rewrite(config, stage, rails, flow)?;
    }
    Ok(spec)
}

/// Checks that a rail rewriting the text of `flow` can: not among parallel
/// rails, and on a stream only when each window is rewritten before it is sent.
pub fn check_rewrite(
    config: &Config,
    stage: Stage,
    rails: &RailStage,
    flow: &FlowRef,
) -> Result<(), ConfigError> {
    if rails.parallel && rails.flows.len() > 1 {
        return Err(ConfigError::invalid(
            &flow.source,
            &flow.key,
            format!(
                "`{}` rewrites the text, which parallel rails cannot combine; set `rails.{stage}.parallel: False`",
                flow.name
            ),
        ));
    }
    let o = config.output_streaming();
    if stage == Stage::Output && o.enabled && (o.stream_first || o.context_size != 0) {
        return Err(ConfigError::invalid(
            config.main_file(),
            "rails.output.streaming",
            format!(
                "`{}` rewrites the answer, which on a stream only works when nothing is sent before its \
                 window is rewritten and windows do not overlap; set `stream_first: False` and `context_size: 0`",
                flow.name
            ),
        ));
    }
    Ok(())
}

/// Builds the rail of a catalog flow.
pub(super) fn build_spec(
    ctx: &mut BuildContext<'_>,
    spec: &FlowSpec,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    match spec.build {
        Build::Judge(judge_spec) => judge::build(ctx, &judge_spec, flow, stage),
        Build::Native(f) => f(ctx, flow, stage),
    }
}

/// What a config's rails are built from besides the config.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub providers: &'a Providers,
    pub templates: TemplateBudget,
    /// The config's Colang flows: one named in a stage runs as a rail.
    pub dialog: Option<&'a std::sync::Arc<crate::dialog::Dialog>>,
    pub actions_server: Option<&'a reqwest::Url>,
}

impl<'a> Sources<'a> {
    fn context<'c>(self, config: &'c Config, warnings: &'c mut Warnings) -> BuildContext<'c>
    where
        'a: 'c,
    {
        BuildContext {
            config,
            providers: self.providers,
            warnings,
            templates: self.templates,
            actions_server: self.actions_server,
        }
    }
}

/// The rails of one stage of `config`: a flow of the config's own of that
/// name, else the catalog's.
pub fn build_stage(
    config: &Config,
    sources: Sources<'_>,
    stage: Stage,
    warnings: &mut Warnings,
) -> Result<RailSet, ConfigError> {
    let rails = match stage {
        Stage::Input => config.input(),
        Stage::Output => config.output(),
        Stage::Retrieval => config.retrieval(),
        Stage::ToolInput => config.tool_input(),
        Stage::ToolOutput => config.tool_output(),
    };
    let mut built = RailSet::with_capacity(rails.flows.len());
    for flow in &rails.flows {
        // The config's own flow of that name wins over a library one, as in NeMo.
        if let Some(dialog) = sources
            .dialog
            .filter(|d| d.flow_named(&flow.name).is_some())
        {
            let mut ctx = sources.context(config, warnings);
            built.push(super::colang::build(&mut ctx, flow, stage, dialog)?);
            continue;
        }
        if matches!(stage, Stage::ToolInput | Stage::ToolOutput) {
            // NeMo's library has no tool rails: they are the config's own.
            return Err(ConfigError::invalid(
                &flow.source,
                &flow.key,
                format!(
                    "`{}`: tool rails are flows of the config's own `*.co` files (`define subflow {}`), and it has none of that name",
                    flow.name, flow.name
                ),
            ));
        }
        let renamed = renamed(config, flow, warnings);
        let flow = renamed.as_ref().unwrap_or(flow);
        let spec = checked_spec(config, stage, rails, flow)?;
        let mut ctx = sources.context(config, warnings);
        built.push(build_spec(&mut ctx, spec, flow, stage)?);
    }
    Ok(built)
}

/// The actions of a config's dialog flows: the NeMo library actions they
/// execute, built as the rails are, before `server` (the actions server).
pub fn dialog_actions(
    config: &Config,
    sources: Sources<'_>,
    dialog: &crate::dialog::Dialog,
    server: Arc<dyn crate::dialog::Actions>,
    warnings: &mut Warnings,
) -> Result<Arc<dyn crate::dialog::Actions>, ConfigError> {
    let mut ctx = sources.context(config, warnings);
    super::library::dialog_actions(&mut ctx, dialog, server)
}

/// Validates and builds the rails of both stages, in configured order.
pub fn build(config: &Config, sources: Sources<'_>) -> Result<Rails, ConfigError> {
    let mut warnings = Warnings::new();
    let input = build_stage(config, sources, Stage::Input, &mut warnings)?;
    let output = build_stage(config, sources, Stage::Output, &mut warnings)?;
    let tool_input = build_stage(config, sources, Stage::ToolInput, &mut warnings)?;
    let tool_output = build_stage(config, sources, Stage::ToolOutput, &mut warnings)?;
    for (name, file) in config.rail_settings_sections() {
        let services = super::services::SETTINGS;
        if !SETTINGS.contains(&name) && !services.contains(&name) {
            let mut known: Vec<&str> = SETTINGS.iter().chain(services).copied().collect();
            known.sort_unstable();
            warnings.push(format!(
                "{}: `rails.config.{name}` is not used by any streamguard rail (known: {})",
                file.display(),
                known.join(", ")
            ));
        }
    }
    // Flows sharing a settings block report its findings once.
    let mut seen = std::collections::HashSet::new();
    warnings.retain(|w| seen.insert(w.clone()));
    Ok(Rails {
        input,
        output,
        tool_input,
        tool_output,
        warnings,
    })
}
