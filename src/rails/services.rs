//! The flows that ask a guardrail service over HTTP, in the same shape as
//! the built-in [`super::CATALOG`]: one line per flow, its stage, what it
//! needs, whether it rewrites, and its builder (one file per service).

use super::{
    FlowSpec,
    Stage::{Input as In, Output as Out, Retrieval as Ret},
    activefence, ai_defense, alignscore, autoalign,
    catalog::native,
    clavata, fiddler, gliner, guardrails_ai, jailbreak, pangea, patronus, private_ai,
    prompt_security, trend_micro,
};

const JB_HEURISTICS: &str =
    "`rails.config.jailbreak_detection.server_endpoint` (NeMo's jailbreak detection server)";
const JB_MODEL: &str = "`rails.config.jailbreak_detection.nim_base_url` (NemoGuard JailbreakDetect NIM) or `server_endpoint`";
const PAI: &str = "`rails.config.privateai.server_endpoint` and `<stage>.entities` (Private AI); PAI_API_KEY for its cloud API";
const FIDDLER: &str =
    "`rails.config.fiddler.fiddler_endpoint` and FIDDLER_API_KEY (Fiddler Guardrails)";
const AI_DEFENSE: &str = "AI_DEFENSE_API_ENDPOINT and AI_DEFENSE_API_KEY (Cisco AI Defense)";
const PANGEA: &str = "PANGEA_API_TOKEN (Pangea AI Guard); `rails.config.pangea.<stage>.recipe`";
const PS: &str = "PS_PROTECT_URL and PS_APP_ID (Prompt Security's Protect API)";
const TREND: &str = "`rails.config.trend_micro.api_key_env_var` (Trend Micro Vision One AI Guard)";
const AA: &str = "`rails.config.autoalign.parameters.endpoint`, `<stage>.guardrails_config` and AUTOALIGN_API_KEY (AutoAlign)";
const AA_FACT: &str =
    "`rails.config.autoalign.parameters.fact_check_endpoint` and AUTOALIGN_API_KEY (AutoAlign)";
const AA_GROUND: &str = "`rails.config.autoalign.parameters.groundedness_check_endpoint`; runs when a dialog flow sets `$check_facts`, over the knowledge base's chunks";
const GLINER: &str = "`rails.config.gliner.server_endpoint` (a GLiNER PII NIM or NeMo's GLiNER server) and `<stage>.entities`";
const GAI: &str = "`$validator=<name>` of `rails.config.guardrails_ai.validators` and a Guardrails AI server (`server_endpoint`)";
const CLAVATA: &str = "`rails.config.clavata.<stage>.policy` (an id or an alias of `policies`) and CLAVATA_API_KEY (Clavata)";
const AF: &str = "ACTIVEFENCE_API_KEY (ActiveFence)";
const PATRONUS: &str = "`rails.config.patronus.output.evaluate_config.params.evaluators` and PATRONUS_API_KEY (Patronus AI)";
const ALIGN: &str = "`rails.config.fact_checking.parameters.endpoint` (an AlignScore server); runs when a dialog flow sets `$check_facts`";

/// Every service flow.
#[rustfmt::skip]
pub const FLOWS: &[FlowSpec] = &[
    native("jailbreak detection heuristics", In, JB_HEURISTICS, false, jailbreak::heuristics),
    native("jailbreak detection model", In, JB_MODEL, false, jailbreak::model),
    native("detect pii on input", In, PAI, false, private_ai::detect),
    native("detect pii on output", Out, PAI, false, private_ai::detect),
    native("mask pii on input", In, PAI, true, private_ai::mask),
    native("mask pii on output", Out, PAI, true, private_ai::mask),
    native("detect pii on retrieval", Ret, PAI, false, private_ai::detect),
    native("mask pii on retrieval", Ret, PAI, true, private_ai::mask),
    native("fiddler user safety", In, FIDDLER, false, fiddler::safety),
    native("fiddler bot safety", Out, FIDDLER, false, fiddler::safety),
    native("fiddler bot faithfulness", Out, FIDDLER, false, fiddler::faithfulness),
    native("ai defense inspect prompt", In, AI_DEFENSE, false, ai_defense::build),
    native("ai defense inspect response", Out, AI_DEFENSE, false, ai_defense::build),
    native("pangea ai guard input", In, PANGEA, true, pangea::build),
    native("pangea ai guard output", Out, PANGEA, true, pangea::build),
    native("protect prompt", In, PS, true, prompt_security::build),
    native("protect response", Out, PS, true, prompt_security::build),
    native("trend ai guard input", In, TREND, false, trend_micro::build),
    native("trend ai guard output", Out, TREND, false, trend_micro::build),
    // Rewrites only with `pii` in the stage's guardrails_config; its builder checks.
    native("autoalign check input", In, AA, false, autoalign::check),
    native("autoalign check output", Out, AA, false, autoalign::check),
    native("autoalign factcheck output", Out, AA_FACT, false, autoalign::factcheck),
    native("autoalign groundedness output", Out, AA_GROUND, false, autoalign::groundedness),
    native("gliner detect pii on input", In, GLINER, false, gliner::detect),
    native("gliner detect pii on output", Out, GLINER, false, gliner::detect),
    native("gliner mask pii on input", In, GLINER, true, gliner::mask),
    native("gliner mask pii on output", Out, GLINER, true, gliner::mask),
    native("gliner detect pii on retrieval", Ret, GLINER, false, gliner::detect),
    native("gliner mask pii on retrieval", Ret, GLINER, true, gliner::mask),
    native("guardrailsai check input", In, GAI, false, guardrails_ai::build),
    native("guardrailsai check output", Out, GAI, false, guardrails_ai::build),
    native("clavata check input", In, CLAVATA, false, clavata::build),
    native("clavata check output", Out, CLAVATA, false, clavata::build),
    native("activefence moderation on input", In, AF, false, activefence::simple),
    native("activefence moderation on output", Out, AF, false, activefence::simple),
    native("activefence moderation on input detailed", In, AF, false, activefence::detailed),
    native("patronus api check output", Out, PATRONUS, false, patronus::api),
    native("alignscore check facts", Out, ALIGN, false, alignscore::build),
];

/// The `rails.config` sections the service rails read.
pub const SETTINGS: &[&str] = &[
    "activefence",
    "ai_defense",
    "autoalign",
    "clavata",
    "fact_checking",
    "fiddler",
    "gliner",
    "guardrails_ai",
    "jailbreak_detection",
    "pangea",
    "patronus",
    "privateai",
    "prompt_security",
    "trend_micro",
];
