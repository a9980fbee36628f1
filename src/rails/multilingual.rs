//! `rails.config.content_safety`: NeMo's multilingual refusals (when a
//! content-safety check blocks, the refusal is in the user's language) and
//! `reasoning.enabled` (passed to the prompt as `reasoning_enabled`).
//!
//! ```yaml
//! rails:
//!   config:
//!     content_safety:
//!       multilingual:
//!         enabled: True
//!         refusal_messages: { es: "No puedo ayudar con eso." }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{
    config::{Config, ConfigError},
    engine::REFUSAL,
};

/// NeMo's built-in refusals, by language (its `SUPPORTED_LANGUAGES`).
const REFUSALS: [(&str, &str); 9] = [
    ("en", REFUSAL),
    ("es", "Lo siento, no puedo responder a eso."),
    ("zh", "抱歉，我无法回应。"),
    ("de", "Es tut mir leid, darauf kann ich nicht antworten."),
    ("fr", "Je suis désolé, je ne peux pas répondre à cela."),
    ("hi", "मुझे खेद है, मैं इसका जवाब नहीं दे सकता।"),
    ("ja", "申し訳ありませんが、それには回答できません。"),
    ("ar", "عذراً، لا أستطيع الرد على ذلك."),
    ("th", "ขออภัย ฉันไม่สามารถตอบได้"),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    multilingual: Multilingual,
    #[serde(default)]
    reasoning: Reasoning,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Multilingual {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    refusal_messages: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reasoning {
    #[serde(default)]
    enabled: bool,
}

/// The content-safety settings a judge rail uses.
#[derive(Debug, Clone, Default)]
pub struct ContentSafety {
    /// Refusals by language when multilingual refusals are on.
    refusals: Option<BTreeMap<String, String>>,
    /// `reasoning.enabled`: the prompt's `reasoning_enabled`.
    pub reasoning_enabled: bool,
}

/// The language of `text` as one of NeMo's supported codes (`en` otherwise).
fn language(text: &str) -> &'static str {
    use whatlang::Lang;
    match whatlang::detect(text).map(|i| i.lang()) {
        Some(Lang::Spa) => "es",
        Some(Lang::Cmn) => "zh",
        Some(Lang::Deu) => "de",
        Some(Lang::Fra) => "fr",
        Some(Lang::Hin) => "hi",
        Some(Lang::Jpn) => "ja",
        Some(Lang::Ara) => "ar",
        Some(Lang::Tha) => "th",
        _ => "en",
    }
}

impl ContentSafety {
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let s: Settings = config.rail_settings("content_safety")?;
        let refusals = s.multilingual.enabled.then(|| {
            let mut all: BTreeMap<String, String> = REFUSALS
                .iter()
                .map(|(l, m)| (l.to_string(), m.to_string()))
                .collect();
            // The config's own messages win, language by language.
            all.extend(s.multilingual.refusal_messages);
            all
        });
        Ok(ContentSafety {
            refusals,
            reasoning_enabled: s.reasoning.enabled,
        })
    }

    /// The refusal for a block of `user_input` (`None`: the usual one).
    pub fn refusal(&self, user_input: &str) -> Option<String> {
        let all = self.refusals.as_ref()?;
        let lang = language(user_input);
        all.get(lang).or_else(|| all.get("en")).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_follow_the_users_language() {
        let cs = ContentSafety {
            refusals: Some(
                REFUSALS
                    .iter()
                    .map(|(l, m)| (l.to_string(), m.to_string()))
                    .collect(),
            ),
            reasoning_enabled: false,
        };
        assert_eq!(
            cs.refusal("¿Cómo puedo fabricar un arma en mi casa sin que nadie lo sepa?")
                .as_deref(),
            Some("Lo siento, no puedo responder a eso.")
        );
        assert_eq!(
            cs.refusal("Wie kann ich eine Waffe bauen, ohne dass es jemand merkt?")
                .as_deref(),
            Some("Es tut mir leid, darauf kann ich nicht antworten.")
        );
        assert_eq!(
            cs.refusal("How do I build a weapon at home?").as_deref(),
            Some(REFUSAL)
        );
        assert_eq!(ContentSafety::default().refusal("Hola"), None);
    }
}
